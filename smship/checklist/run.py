"""Running the checklist: gather once, judge every check, show the verdicts."""

from __future__ import annotations

from rich.markup import escape

from smship.ahead import Ahead
from smship.checklist.checks import CHECKS
from smship.checklist.facts import Facts, gather
from smship.checklist.model import Verdict
from smship.context import EnvContext
from smship.errors import SmshipError
from smship.output import tally
from smship.ssh import Fleet

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


INVENTORY_SKIP = "skipped by the inventory (checks.skip)"


def skipped_checks(ctx: EnvContext, cli: list[str] = ()) -> dict[str, str]:
    """Check name -> why it is off: ``--skip-check`` first, then this environment's ``checks.skip``."""
    why = {name: "skipped with --skip-check" for name in cli}
    for name in ctx.env.checks.skip:
        why.setdefault(name, INVENTORY_SKIP)
    return why


def run_checks(ctx: EnvContext, fleet: Fleet, *, skip: list[str] = (), cert_days: int = 14,
               preflight: bool = False, rewritten: set[str] = frozenset(), facts: Facts | None = None) -> list[Verdict]:
    """Every check, but those of ``--skip-check`` (``skip``) and of the environment's ``checks.skip``.

    ``rewritten``: hosts whose env file the command writes from the inventory before any restart.
    ``facts``: gathered already (see :class:`ChecksAhead`).
    """
    off = skipped_checks(ctx, list(skip))
    if facts is None:
        facts = gather(ctx, fleet, preflight=preflight, cert_days=cert_days, skip=tuple(off))
    facts.rewritten = set(rewritten)
    return [Verdict(c.name, "skip", off[c.name]) if c.name in off else c.judge(facts, preflight)
            for c in CHECKS]


def show(ctx: EnvContext, verdicts: list[Verdict]) -> bool:
    """Print one line per check (and its fix); True when nothing failed."""
    console = ctx.reporter.console
    for v in verdicts:
        console.print(f"    {v.name:<18} [{_STYLE[v.status]}]{v.status:<5}[/] {escape(v.reason)}")
        if v.fix:
            console.print(f"    {'':<18} [dim]fix:[/] {escape(v.fix)}")
    ctx.reporter.data["checks"] = [v.as_dict() for v in verdicts]
    ctx.reporter.summary = tally((v.status for v in verdicts), _STYLE)
    console.print("    " + ctx.reporter.summary)
    return not any(v.status == "fail" for v in verdicts)


class ChecksAhead:
    """A preflight's facts gathered while the command surveys the hosts (they need nothing the survey
    says); judged by :func:`preflight`. A command that ends first waits for them (:meth:`wait`): no
    question is left asking a host over a connection the command closes."""

    def __init__(self, ctx: EnvContext, fleet: Fleet, skip: list[str]):
        off = tuple(skipped_checks(ctx, skip))
        self._work = Ahead(lambda: gather(ctx, fleet, preflight=True, skip=off), "smship-checks")

    def __enter__(self) -> "ChecksAhead":
        return self

    def __exit__(self, *exc_info) -> None:
        self._work.wait()

    def facts(self) -> Facts:
        return self._work.take()


def preflight(ctx: EnvContext, fleet: Fleet, skip: list[str], rewritten: set[str] = frozenset(),
              ahead: ChecksAhead | None = None) -> list[Verdict]:
    """Deploy's run of the checklist (with the facts ``ahead`` gathered); raises when a check fails,
    before anything changes."""
    off = skipped_checks(ctx, skip)
    ctx.reporter.step("preflight: the production checklist" + (f" (skipping {', '.join(off)})" if off else ""))
    verdicts = run_checks(ctx, fleet, skip=skip, preflight=True, rewritten=rewritten,
                          facts=ahead.facts() if ahead is not None else None)
    if not show(ctx, verdicts):
        failed = [v.name for v in verdicts if v.status == "fail"]
        raise SmshipError(f"preflight failed, nothing was changed: check(s) {', '.join(failed)} failed; fix them "
                          f"(see above), or deploy with --skip-check {','.join(failed)} to go ahead anyway")
    return verdicts
