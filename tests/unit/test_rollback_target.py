"""Which release `smship rollback` goes back to without --to: the one live before the live one was deployed.

The activation log is the host agent's own code; it is exercised here on a
real file, and the choice on the survey it feeds.
"""

from __future__ import annotations

import json

import pytest

from smship.deploy.rollback import choose_targets, previous_release
from smship.steps.survey import HostSurvey
from smship.errors import SmshipError
from smship.remote import agent


def host(current: str, activations, releases=("r1", "r2", "r3", "r4", "r5")) -> HostSurvey:
    return HostSurvey(current=current, releases=list(releases), complete=list(releases), free_bytes=0,
                      activations=activations)


def test_the_activation_log_records_each_activation_and_the_release_live_before_it_began(tmp_path):
    log = str(tmp_path / "activations.jsonl")
    assert agent._activations(log) is None
    agent._record_activation(log, "r2", "r1")  # a host an older smship deployed r1 to
    agent._record_activation(log, "r2", "r2")  # the worker tier of the same host
    agent._record_activation(log, "r4", "r2")
    with open(log, "a") as handle:
        handle.write('{"release": "r5"')  # cut short by a crash mid-write
    assert agent._activations(log) == [["r1", None], ["r2", "r1"], ["r4", "r2"]]
    lines = [json.loads(line) for line in open(log).read().splitlines()[:3]]
    assert all("at" in line for line in lines)


def test_the_activation_log_is_not_written_through_a_symlink(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "activations.jsonl").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        agent._record_activation(str(tmp_path / "activations.jsonl"), "r2", "r1")
    assert (tmp_path / "elsewhere").read_text() == ""


def test_rollback_skips_a_complete_release_that_never_went_live():
    # r3's migration failed: shipped and complete, never live; r4 replaced r2.
    surveyed = host("r4", [("r1", None), ("r2", "r1"), ("r4", "r2")])
    assert previous_release(surveyed) == "r2"
    assert choose_targets({"web1": surveyed}, None) == {"web1": "r2"}
    assert choose_targets({"web1": surveyed}, "r3") == {"web1": "r3"}  # named with --to: taken as asked


def test_rollback_goes_to_what_the_live_release_replaced_and_again_further_back():
    # r3 went live and was rolled back from; r4 then replaced r2: r2, not r3, was live before it.
    history = [("r1", None), ("r2", "r1"), ("r3", "r2"), ("r2", "r3"), ("r4", "r2")]
    assert previous_release(host("r4", history)) == "r2"
    # After that rollback, another one goes on to r1 rather than back to r4.
    assert previous_release(host("r2", history + [("r2", "r4")])) == "r1"
    # A deploy halted elsewhere put r2 back after r5 passed here: r2 still replaced r1.
    assert previous_release(host("r2", [("r1", None), ("r2", "r1"), ("r5", "r2"), ("r2", "r5")])) == "r1"


def test_rollback_without_a_record_asks_for_to():
    with pytest.raises(SmshipError, match="web1: no record of which releases went live here.*--to"):
        choose_targets({"web1": host("r4", None)}, None)
    with pytest.raises(SmshipError, match="web1: the activation log names no release live here before r4"):
        choose_targets({"web1": host("r4", [("r4", None)])}, None)


def test_a_pruned_previous_release_is_named_with_what_the_host_has():
    pruned = host("r4", [("r1", None), ("r4", "r1")], releases=("r2", "r3", "r4"))
    with pytest.raises(SmshipError, match=r"web1: r1, live here before r4, is no longer on this host; name another "
                                          r"with --to \(has: r2, r3, r4\)"):
        choose_targets({"web1": pruned}, None)
