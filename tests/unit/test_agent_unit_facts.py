"""The agent's facts of one app unit for ``smship check``: SM010 is looked for in the run that is live."""

from __future__ import annotations

from smship.remote import agent


def fake_systemd(monkeypatch, shown: str, journal: dict[str, str]) -> list[list[str]]:
    calls = []

    def run(argv, stdin=None):
        calls.append(argv)
        if argv[:2] == ["systemctl", "show"]:
            return 0, shown, ""
        key = next((word for word in argv if word.startswith("_SYSTEMD_INVOCATION_ID=") or word == "--since"), "-b")
        return 0, journal.get(key, ""), ""

    monkeypatch.setattr(agent, "_run", run)
    return calls


def test_an_active_unit_is_judged_on_its_own_run_not_on_the_second_it_started(monkeypatch):
    # The crash before it logged SM010 in the same second as this run's start: a time cannot tell them apart.
    calls = fake_systemd(monkeypatch, "ActiveState=active\nSubState=running\nMainPID=0\nInvocationID=abc123\n"
                                      "ActiveEnterTimestamp=@1796280316\n",
                         {"--since": "SM010 database is not at the migration head\n",
                          "_SYSTEMD_INVOCATION_ID=abc123": "refapp started\n"})
    facts = agent._unit_facts("shop-web@b.service")
    assert facts["sm010"] is None and facts["state"] == "active"
    assert calls[-1] == ["journalctl", "--no-pager", "-o", "cat", "_SYSTEMD_INVOCATION_ID=abc123"]


def test_a_unit_that_is_not_running_is_judged_on_its_last_attempt(monkeypatch):
    calls = fake_systemd(monkeypatch, "ActiveState=activating\nSubState=auto-restart\nMainPID=0\nInvocationID=def\n"
                                      "InactiveExitTimestamp=@1796280315\n",
                         {"--since": "SM010 database is not at the migration head\n"})
    facts = agent._unit_facts("shop-worker.service")
    assert facts["sm010"] == "SM010 database is not at the migration head"
    assert calls[-1][-2:] == ["--since", "@1796280315"] and "-u" in calls[-1]
