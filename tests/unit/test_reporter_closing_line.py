"""The closing line says what a command did: hosts' outcomes, else the command's own account."""

from __future__ import annotations

import io
from types import SimpleNamespace

from smship.checklist.model import Verdict
from smship.checklist.run import show
from smship.output import Reporter


def closing(reporter: Reporter, ok: bool | None = None) -> str:
    reporter.finish("check prod", ok)
    return reporter.console.file.getvalue().splitlines()[-1]


def test_a_command_without_host_outcomes_closes_with_its_own_account():
    reporter = Reporter(stream=io.StringIO())
    assert closing(reporter).startswith("done check prod: nothing to do in ")
    reporter = Reporter(stream=io.StringIO())
    ok = show(SimpleNamespace(reporter=reporter), [Verdict("hosts", "pass", "all answered"),
                                                   Verdict("tls", "warn", "self-signed"),
                                                   Verdict("admin", "fail", "no admin user", "create one")])
    assert not ok
    assert closing(reporter, ok).startswith("failed check prod: 1 pass, 1 warn, 1 fail in ")


def test_host_outcomes_come_first_and_a_summary_is_text_not_markup():
    reporter = Reporter(stream=io.StringIO())
    reporter.summary = "[red]2 of 3[/] host(s) answered"
    assert closing(reporter).startswith("done check prod: [red]2 of 3[/] host(s) answered in ")
    reporter = Reporter(stream=io.StringIO())
    reporter.summary = "ignored"
    reporter.host("web1", "changed", "x")
    assert closing(reporter).startswith("done check prod: 1 changed in ")
