"""Ctrl-C while a fleet call hands its hosts' work to threads: every host that began is waited for.

Run on a real Fleet (its ``map`` needs no connection) with a thread that does
not block SIGINT beside it, as paramiko's transport threads are during a
deploy: the kernel may hand the signal to that thread, and Python still
raises KeyboardInterrupt in the main thread.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from smship.ssh import Fleet, SSHOptions, Target

pytestmark = pytest.mark.usefixtures("ctrl_c_raises")

HOSTS = [f"h{i}" for i in range(8)]


def test_ctrl_c_while_the_work_is_handed_out_waits_for_every_host_and_leaves_none_behind(tmp_path):
    fleet = Fleet([Target(name, "192.0.2.1") for name in HOSTS],
                  SSHOptions(known_hosts=tmp_path / "known_hosts", ssh_config=None, parallel=len(HOSTS)))
    began, ended = [], []
    stop = threading.Event()
    bystander = threading.Thread(target=stop.wait, name="bystander")
    bystander.start()

    def work(target):
        began.append(target.name)
        if target.name == HOSTS[0]:
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        ended.append(target.name)

    try:
        with pytest.raises(KeyboardInterrupt):
            fleet.map(work)
        # Every host's work was handed out before the Ctrl-C was raised, and all of it ended before map did.
        assert sorted(began) == sorted(ended) == HOSTS
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        stop.set()
        bystander.join()


def test_a_fleet_call_from_another_thread_leaves_the_ctrl_c_handler_alone(tmp_path):
    fleet = Fleet([Target(name, "192.0.2.1") for name in HOSTS[:2]],
                  SSHOptions(known_hosts=tmp_path / "known_hosts", ssh_config=None))
    seen = []
    caller = threading.Thread(target=lambda: seen.append(fleet.map(lambda t: signal.getsignal(signal.SIGINT))))
    caller.start()
    caller.join()
    assert set(seen[0].succeeded.values()) == {signal.default_int_handler}
