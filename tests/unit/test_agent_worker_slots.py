"""The agent's worker slots on a release tree under tmp_path: which slot serves, the units a request
means, what an activation starts, switches and stops, and what a failed one leaves.

systemctl's answers are given here (a fake that records each call and plays the units' states);
starting real workers beside each other is the lab's (tests/lab/test_deploy.py).
"""

from __future__ import annotations

import pytest

from smship.layout import Layout
from smship.remote import agent, client


def root_with(tmp_path, *releases: str):
    for release in releases:
        (tmp_path / "releases" / release).mkdir(parents=True)
        (tmp_path / "releases" / release / agent.COMPLETE_MARKER).write_text("")
    (tmp_path / "worker").mkdir()
    return tmp_path


def slots(root) -> dict:
    return Layout(app="shop", user="shop", root=str(root)).worker_slots(stop_wait=5)


def request(root, release: str, units=("shop-worker@.service",), beat_ready=False) -> dict:
    layout = Layout(app="shop", user="shop", root=str(root))
    ready = {"shop-worker@.service": "shop@jobs1 ready."} | ({"shop-beat.service": "beat: Starting..."} if beat_ready else {})
    return {"root": str(root), "release": release, "restart": list(units), "ready": ready,
            "background": client.background_link(layout.background_release, True), "worker": slots(root),
            "activation_log": str(root / "activations")}


class FakeSystemd:
    """systemctl as the agent calls it: each call recorded; units listed in ``crashing`` fail their watch."""

    def __init__(self, monkeypatch, root, crashing=()):
        self.root = root
        self.calls: list[list[str]] = []
        self.crashing = set(crashing)
        self.crash_after: dict[str, int] = {}   # unit: how many watch polls it survives
        self.states: dict[str, str] = {}        # unit: the ActiveState show gives (default active)
        self.active: set[str] = set()
        monkeypatch.setattr(agent, "_run", self.run)
        monkeypatch.setattr(agent, "_start", lambda argv, stdin=None: (self.run(argv), lambda: (0, "", ""))[1])
        monkeypatch.setattr(agent, "_logged", lambda invocation, line: agent.time.time())
        monkeypatch.setattr(agent, "READY_GRACE", 0)
        monkeypatch.setattr(agent.time, "sleep", lambda seconds: None)

    def run(self, argv, stdin=None):
        self.calls.append(list(argv))
        if argv[:2] == ["systemctl", "restart"]:
            self.active.update(argv[2:])
        elif argv[:2] == ["systemctl", "stop"]:
            self.active.difference_update(a for a in argv[2:] if not a.startswith("--"))
        elif argv[:2] == ["systemctl", "is-active"]:
            return 0, ("active" if argv[2] in self.active else "inactive") + "\n", ""
        elif argv[:2] == ["systemctl", "show"]:
            units = [a for a in argv[2:] if a.endswith(".service")]
            blocks = []
            for unit in units:
                if unit in self.crash_after and "ActiveState" in " ".join(argv):
                    self.crash_after[unit] -= 1
                    if self.crash_after[unit] < 0:
                        self.crashing.add(unit)
                state = "failed" if unit in self.crashing else self.states.get(unit, "active")
                blocks.append(f"ActiveState={state}\nSubState=running\nNRestarts=0\nInvocationID=x\n"
                              f"WorkingDirectory={self.root}/background\n")
            return 0, "\n".join(blocks), ""
        return 0, "", ""

    def ran(self, *argv: str) -> bool:
        return list(argv) in self.calls

    def enabled(self) -> set[str]:
        """The units that start at boot after every enable and disable call so far."""
        units: set[str] = set()
        for call in self.calls:
            if call[:2] in (["systemctl", "enable"], ["systemctl", "disable"]):
                named = {a for a in call[2:] if not a.startswith("--")}
                units = units | named if call[1] == "enable" else units - named
        return units


def test_the_serving_worker_slot_is_the_one_the_live_link_names(tmp_path):
    worker = slots(root_with(tmp_path))
    assert agent._serving_worker_slot(worker) is None
    (tmp_path / "worker" / "live").symlink_to(tmp_path / "worker" / "slot-b")
    assert agent._serving_worker_slot(worker) == "b"
    assert agent._units({"units": ["shop-worker@.service", "shop-beat.service"], "worker": worker}) == \
        ["shop-worker@b.service", "shop-beat.service"]


def test_the_new_release_starts_in_the_idle_slot_and_the_old_one_is_asked_to_stop_without_waiting(
        tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1", "r2")
    systemd = FakeSystemd(monkeypatch, root)
    first = agent.activate(request(root, "r1"))
    assert first["ok"] and first["previous"] is None
    assert systemd.ran("systemctl", "restart", "shop-worker@a.service")
    assert agent._serving_worker_slot(slots(root)) == "a"
    systemd.calls.clear()
    second = agent.activate(request(root, "r2", units=("shop-worker@.service", "shop-beat.service"), beat_ready=True))
    assert second["ok"] and (second["previous"], second["release"]) == ("r1", "r2")
    # The beat restarts beside the new slot: there is one beat in a fleet.
    assert systemd.ran("systemctl", "restart", "shop-worker@b.service", "shop-beat.service")
    assert systemd.ran("systemctl", "stop", "--no-block", "shop-worker@a.service")
    assert systemd.ran("systemctl", "enable", "--quiet", "--no-reload", "shop-worker@b.service")
    assert systemd.ran("systemctl", "disable", "--quiet", "--no-reload", "shop-worker@a.service")
    restart = systemd.calls.index(["systemctl", "restart", "shop-worker@b.service", "shop-beat.service"])
    stop = systemd.calls.index(["systemctl", "stop", "--no-block", "shop-worker@a.service"])
    # Which slot starts at boot (and systemd's reload) changes once the new slot logged its ready line,
    # in its grace, before the old slot is asked to stop.
    boot = systemd.calls.index(["systemctl", "enable", "--quiet", "--no-reload", "shop-worker@b.service"])
    watched = next(i for i, call in enumerate(systemd.calls) if i > restart and call[:2] == ["systemctl", "show"]
                   and "ActiveState" in " ".join(call))
    assert restart < watched < boot < systemd.calls.index(["systemctl", "daemon-reload"]) < stop
    assert systemd.enabled() == {"shop-worker@b.service"}
    assert agent._serving_worker_slot(slots(root)) == "b"
    assert agent._linked(str(root / "worker" / "slot-b")) == "r2"
    assert agent._linked(str(root / "worker" / "slot-a")) == "r1"     # it may still finish tasks there
    assert (agent._linked(str(root / "background")), agent._current(str(root))) == ("r2", "r2")


def test_a_new_slot_that_crashes_is_stopped_and_the_serving_one_never_is(tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1", "r2")
    systemd = FakeSystemd(monkeypatch, root)
    assert agent.activate(request(root, "r1"))["ok"]
    systemd.crashing.add("shop-worker@b.service")
    systemd.calls.clear()
    answer = agent.activate(request(root, "r2"))
    assert not answer["ok"] and "shop-worker@b.service crashed after the restart" in answer["reason"]
    assert answer["reverted"] is True
    assert systemd.ran("systemctl", "stop", "--no-block", "shop-worker@b.service")
    assert not any(call[:2] == ["systemctl", "stop"] and "shop-worker@a.service" in call for call in systemd.calls)
    assert not any(call[:2] == ["systemctl", "restart"] and "shop-worker@a.service" in call for call in systemd.calls)
    assert agent._serving_worker_slot(slots(root)) == "a"
    assert (agent._linked(str(root / "background")), agent._current(str(root))) == ("r1", "r1")
    # It crashed before its ready line: which slot starts at boot never changed.
    assert not any(call[1] in ("enable", "disable", "daemon-reload") for call in systemd.calls)


def test_a_new_slot_that_crashes_in_its_grace_leaves_the_serving_slot_the_one_that_starts_at_boot(
        tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1", "r2")
    systemd = FakeSystemd(monkeypatch, root)
    assert agent.activate(request(root, "r1"))["ok"]
    assert systemd.enabled() == {"shop-worker@a.service"}
    monkeypatch.setattr(agent, "READY_GRACE", 0.3)
    systemd.crash_after["shop-worker@b.service"] = 1     # ready at the first poll, dead at the second
    answer = agent.activate(request(root, "r2"))
    assert not answer["ok"] and "shop-worker@b.service crashed after the restart" in answer["reason"]
    assert answer["reverted"] is True and "reload_error" not in answer
    # Slot b was enabled for boot as its grace began, then slot a again.
    assert systemd.ran("systemctl", "enable", "--quiet", "--no-reload", "shop-worker@b.service")
    assert systemd.enabled() == {"shop-worker@a.service"}
    assert agent._serving_worker_slot(slots(root)) == "a"


def test_a_host_still_running_the_pre_slot_worker_unit_is_refused_by_name(tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1")
    asked = request(root, "r1")
    asked["worker"] = asked["worker"] | {"legacy": "../../../" + str(tmp_path / "legacy.service")}
    (tmp_path / "legacy.service").write_text("")
    answer = agent.activate(asked)
    assert answer["ok"] is False and answer["untouched"] is True
    assert "the worker unit of an older smship; run 'smship provision'" in answer["reason"]
    assert agent._serving_worker_slot(slots(root)) is None


@pytest.mark.parametrize("stop_wait", [0, 7])
def test_the_layout_hands_the_agent_the_slots_and_how_long_the_idle_one_may_still_stop(stop_wait):
    worker = Layout(app="shop", user="shop", root="/srv/shop").worker_slots(stop_wait)
    assert worker == {"live": "/srv/shop/worker/live", "release": "/srv/shop/worker/slot-%s",
                      "service": "shop-worker@%s.service", "legacy": "shop-worker.service", "stop_wait": stop_wait}


def worker_restart(root) -> dict:
    return client.worker_slot_restart(str(root), slots(root), "shop@jobs1 ready.", "handler restart worker")


def test_a_handler_s_restart_starts_the_idle_worker_slot_on_the_serving_release_and_moves_nothing_else(
        tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1", "r2")
    monkeypatch.setattr(agent, "PENDING_HANDLERS", str(tmp_path / "pending-handlers.json"))
    systemd = FakeSystemd(monkeypatch, root)
    assert agent.activate(request(root, "r1"))["ok"]
    # The worker and beat's own link names another release (a deploy that failed part way, say).
    agent._link({"path": str(root / "background"), "target": str(root / "releases" / "r2")})
    log = (root / "activations").read_text()
    systemd.calls.clear()
    answer = agent.apply({"actions": [worker_restart(root)], "handlers": ["restart worker"]})
    assert answer == {"ok": True, "done": ["handler restart worker"]}
    assert systemd.ran("systemctl", "restart", "shop-worker@b.service")
    assert systemd.ran("systemctl", "stop", "--no-block", "shop-worker@a.service")
    assert not any(call[1] == "restart" and "shop-worker@a.service" in call for call in systemd.calls)
    assert agent._serving_worker_slot(slots(root)) == "b"
    assert agent._linked(str(root / "worker" / "slot-b")) == "r1"       # the release the worker ran
    assert systemd.enabled() == {"shop-worker@b.service"}
    # Neither ``current``, nor the worker and beat's link, nor the activation log moved.
    assert (agent._linked(str(root / "background")), agent._current(str(root))) == ("r2", "r1")
    assert (root / "activations").read_text() == log


def test_a_handler_s_new_worker_that_crashes_fails_the_apply_and_the_serving_one_runs_on(tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1")
    monkeypatch.setattr(agent, "PENDING_HANDLERS", str(tmp_path / "pending-handlers.json"))
    systemd = FakeSystemd(monkeypatch, root)
    assert agent.activate(request(root, "r1"))["ok"]
    systemd.crashing.add("shop-worker@b.service")
    systemd.calls.clear()
    answer = agent.apply({"actions": [worker_restart(root)], "handlers": ["restart worker"]})
    assert answer["ok"] is False and answer["failed"] == "handler restart worker"
    assert "the new worker (release r1) failed and was stopped" in answer["error"]
    assert "the old one (slot a) kept running" in answer["error"]
    assert agent._serving_worker_slot(slots(root)) == "a" and "shop-worker@a.service" in systemd.active
    assert not any(call[1] in ("stop", "restart") and "shop-worker@a.service" in call for call in systemd.calls)


def test_a_handler_s_restart_starts_no_worker_where_none_runs(tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1")
    monkeypatch.setattr(agent, "PENDING_HANDLERS", str(tmp_path / "pending-handlers.json"))
    systemd = FakeSystemd(monkeypatch, root)
    assert agent.apply({"actions": [worker_restart(root)]})["ok"]          # never deployed
    assert agent.activate(request(root, "r1"))["ok"]
    systemd.active.clear()                                                  # stopped by hand
    systemd.calls.clear()
    assert agent.apply({"actions": [worker_restart(root)]})["ok"]
    assert not any(call[1] in ("restart", "start") for call in systemd.calls)


def test_status_lists_the_old_worker_slot_while_it_still_finishes_its_tasks(tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1", "r2")
    systemd = FakeSystemd(monkeypatch, root)
    assert agent.activate(request(root, "r1"))["ok"] and agent.activate(request(root, "r2"))["ok"]
    asked = client.status(str(root), str(root / "lock"), ["shop-worker@.service"], None, None,
                          worker=slots(root)).body()
    systemd.states["shop-worker@a.service"] = "deactivating"
    answer = client._host_status("jobs1", agent.status(asked))
    assert list(answer.units) == ["shop-worker@b.service", "shop-worker@a.service"]
    assert not answer.units["shop-worker@b.service"].idle
    assert answer.units["shop-worker@a.service"].idle and answer.units["shop-worker@a.service"].state == "deactivating"
    systemd.states["shop-worker@a.service"] = "inactive"
    assert list(client._host_status("jobs1", agent.status(asked)).units) == ["shop-worker@b.service"]
