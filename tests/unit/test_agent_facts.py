"""The agent's facts round trip on this machine: its read-only programs run side by side, each answer read
as its own."""

from __future__ import annotations

from smship.remote import agent


def test_facts_runs_its_checks_at_once_and_reads_each_answer_as_its_own(tmp_path):
    import base64
    import time

    checks = {"slow": {"argv": ["sh", "-c", "sleep 0.4; echo slow"], "output": "slow"},
              "also slow": {"argv": ["sh", "-c", "sleep 0.4; exit 1"], "output": None},
              "reads stdin": {"argv": ["cat"], "stdin": base64.b64encode(b"given\n").decode(), "output": "given"},
              "says otherwise": {"argv": ["echo", "no"], "output": "yes"}}
    began = time.monotonic()
    answer = agent.facts({"checks": checks, "paths": {str(tmp_path): None}})
    assert time.monotonic() - began < 0.75          # the two slow ones side by side, not one after the other
    assert answer["checks"] == {"slow": True, "also slow": False, "reads stdin": True, "says otherwise": False}
    assert answer["paths"][str(tmp_path)]["type"] == "dir"


def test_the_agents_own_interpreter_is_not_started_again_to_tell_its_version(monkeypatch):
    import sys

    started = []
    real_run = agent._run
    monkeypatch.setattr(agent, "_run", lambda argv, stdin=None: started.append(argv) or real_run(argv, stdin))
    assert agent._interpreter_version(sys.executable) == "%d.%d.%d" % sys.version_info[:3]
    assert started == []
    assert agent._interpreter_version("/no/such/python") is None
    assert started == [["/no/such/python", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]]
