"""Which release `smship rollback` goes back to without --to: the previous one that went live.

The activation log is the host agent's own file code; it is exercised here on a
real file, and the choice on the survey it feeds.
"""

from __future__ import annotations

import json

import pytest

from smship.deploy.rollback import choose_targets, previous_release
from smship.deploy.survey import HostSurvey
from smship.errors import SmshipError
from smship.remote import agent


def test_the_activation_log_records_each_release_once_and_the_one_live_before_it_began(tmp_path):
    log = str(tmp_path / "activations.jsonl")
    assert agent._went_live(log) is None
    agent._record_activation(log, "r2", "r1")  # a host an older smship deployed r1 to
    agent._record_activation(log, "r2", "r2")  # the worker tier of the same host
    agent._record_activation(log, "r4", "r2")
    with open(log, "a") as handle:
        handle.write('{"release": "r5"')  # cut short by a crash mid-write
    assert agent._went_live(log) == ["r1", "r2", "r4"]
    lines = [json.loads(line) for line in open(log).read().splitlines()[:3]]
    assert [line["release"] for line in lines] == ["r1", "r2", "r4"] and all("at" in line for line in lines)


def test_the_activation_log_is_not_written_through_a_symlink(tmp_path):
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / "activations.jsonl").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):
        agent._record_activation(str(tmp_path / "activations.jsonl"), "r2", "r1")
    assert (tmp_path / "elsewhere").read_text() == ""


def test_rollback_skips_a_complete_release_that_never_went_live():
    # r3's migration failed: shipped and complete, never live; r4 is live now.
    host = HostSurvey(current="r4", releases=["r1", "r2", "r3", "r4"], complete=["r1", "r2", "r3", "r4"],
                      free_bytes=0, went_live=["r1", "r2", "r4"])
    assert previous_release(host) == "r2"
    assert choose_targets({"web1": host}, None) == {"web1": "r2"}
    assert choose_targets({"web1": host}, "r3") == {"web1": "r3"}  # named with --to: taken as asked


def test_rollback_without_a_record_asks_for_to():
    host = HostSurvey(current="r4", releases=["r3", "r4"], complete=["r3", "r4"], free_bytes=0, went_live=None)
    with pytest.raises(SmshipError, match="web1: no record of which releases went live here.*--to"):
        choose_targets({"web1": host}, None)
    only = HostSurvey(current="r4", releases=["r3", "r4"], complete=["r3", "r4"], free_bytes=0, went_live=["r4"])
    with pytest.raises(SmshipError, match="web1: no release before r4 went live on this host"):
        choose_targets({"web1": only}, None)
