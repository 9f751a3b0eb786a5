"""A fleet-wide step some hosts have not finished names them while the caller waits (Fleet.map's ``waiting``).

Run on a real Fleet: its ``map`` needs no connection.
"""

from __future__ import annotations

import threading
import time

from smship.ssh import Fleet, SSHOptions, Target


def fleet_of(tmp_path, names):
    return Fleet([Target(name, "192.0.2.1") for name in names],
                 SSHOptions(known_hosts=tmp_path / "known_hosts", ssh_config=None, parallel=len(names)))


def test_the_hosts_still_at_work_are_named_at_each_interval_in_the_callers_thread(tmp_path):
    fleet = fleet_of(tmp_path, ["quick", "slow", "slower"])
    took = {"quick": 0.0, "slow": 0.35, "slower": 0.75}
    said: list[tuple[list[str], float, str]] = []

    result = fleet.map(lambda t: time.sleep(took[t.name]) or t.name,
                       waiting=lambda hosts, seconds: said.append((hosts, seconds, threading.current_thread().name)),
                       every=0.2)
    assert result.ok and list(result.succeeded) == ["quick", "slow", "slower"]
    assert [hosts for hosts, _, _ in said] == [["slow", "slower"], ["slower"], ["slower"]], said
    assert all(0.2 * i <= seconds < 0.2 * i + 0.15 for i, (_, seconds, _) in enumerate(said, 1)), said
    assert {thread for _, _, thread in said} == {threading.current_thread().name}


def test_a_step_that_ends_within_the_interval_says_nothing_and_a_failed_host_is_still_collected(tmp_path):
    fleet = fleet_of(tmp_path, ["a", "b"])
    said = []

    def work(target):
        if target.name == "b":
            raise RuntimeError("b failed")
        return "ok"

    result = fleet.map(work, waiting=lambda hosts, seconds: said.append(hosts), every=5)
    assert said == [] and result.succeeded == {"a": "ok"} and str(result.failed["b"]) == "b failed"
