"""Agents begun ahead: every host at once, each taken as soon as its own agent has begun."""

from __future__ import annotations

import threading

from smship.remote import AgentsAhead
from smship.ssh import FleetResult, Target

FAST, SLOW = Target("fast", "10.0.0.2"), Target("slow", "10.0.0.3")


class Begun:
    def __init__(self, name: str) -> None:
        self.name, self.cancelled = name, False

    def cancel(self) -> None:
        self.cancelled = True


class Fleet:
    """Begins an agent on each host in a thread of its own; the slow host's waits for ``slow_may_begin``."""

    def __init__(self) -> None:
        self.slow_may_begin = threading.Event()
        self.begun: list[Begun] = []

    def map(self, work, targets):
        threads = [threading.Thread(target=work, args=(target,)) for target in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return FleetResult({})

    def begin(self, target, command):
        if target is SLOW:
            assert self.slow_may_begin.wait(10)
        begun = Begun(target.name)
        self.begun.append(begun)
        return begun


def test_a_host_s_agent_is_taken_without_waiting_for_a_slower_host():
    fleet = Fleet()
    ahead = AgentsAhead(fleet, [FAST, SLOW])
    try:
        assert ahead.take("fast").name == "fast"
        assert not fleet.slow_may_begin.is_set()
        assert ahead.take("fast") is None and ahead.take("elsewhere") is None
    finally:
        fleet.slow_may_begin.set()
    assert ahead.take("slow").name == "slow"


def test_cancel_closes_only_the_agents_not_taken():
    fleet = Fleet()
    fleet.slow_may_begin.set()
    ahead = AgentsAhead(fleet, [FAST, SLOW])
    taken = ahead.take("fast")
    ahead.cancel()
    assert not taken.cancelled
    assert [b.name for b in fleet.begun if b.cancelled] == ["slow"]
    assert ahead.take("slow") is None
