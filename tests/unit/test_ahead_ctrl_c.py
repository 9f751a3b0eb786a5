"""Work begun ahead, waited for through a Ctrl-C: the wait can be interrupted and begun again."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from smship.ahead import Ahead, to_its_end


def ctrl_c_in(seconds: float) -> None:
    threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT)).start()


def test_a_wait_interrupted_while_the_work_runs_leaves_it_running_and_its_result_to_come():
    release = threading.Event()
    ahead = Ahead(lambda: release.wait(30) and "done", "test-ahead")
    ctrl_c_in(0.05)
    with pytest.raises(KeyboardInterrupt):
        ahead.wait()
    assert ahead.running()
    release.set()
    assert ahead.take() == "done"


def test_to_its_end_waits_through_one_ctrl_c_and_says_it_came():
    said = threading.Event()
    ctrl_c_in(0.05)
    # The work ends only once the Ctrl-C was said: the wait went on past it.
    result, interrupted = to_its_end(lambda: said.wait(30) and "migrated", "test-step", said.set)
    assert (result, interrupted) == ("migrated", True)


def test_a_second_ctrl_c_stops_waiting():
    release = threading.Event()
    ctrl_c_in(0.05)
    try:
        with pytest.raises(KeyboardInterrupt):
            to_its_end(lambda: release.wait(30), "test-step", lambda: ctrl_c_in(0.05))
    finally:
        release.set()
