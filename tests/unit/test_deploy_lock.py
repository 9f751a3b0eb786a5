"""Which deploy locks smship may remove on its own."""

import os
import socket
import subprocess
import sys
from dataclasses import replace

from smship.remote.client import LockHolder, lock_holder
from smship.steps.lock import holder_text, left_by_a_dead_process, new_holder


def test_a_lock_from_a_dead_process_on_this_machine_is_stale():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    holder = replace(new_holder("deploy prod"), pid=gone.pid)
    assert left_by_a_dead_process(holder)


def test_a_live_process_or_another_machine_keeps_its_lock():
    assert not left_by_a_dead_process(new_holder("deploy prod"))           # this very process
    assert not left_by_a_dead_process(replace(new_holder("deploy prod"), machine=socket.gethostname() + "-ci",
                                              pid=2 ** 22 + 17))
    assert not left_by_a_dead_process(LockHolder())


def test_holder_text_names_who_and_what():
    text = holder_text(replace(new_holder("deploy prod"), pid=os.getpid()))
    assert "deploy prod" in text and socket.gethostname() in text and str(os.getpid()) in text
    assert holder_text(LockHolder()) == "an unknown holder"


def test_a_holder_read_back_from_a_host_keeps_its_fields_and_tolerates_foreign_ones():
    holder = new_holder("deploy prod")
    assert lock_holder(holder.record()) == holder
    # A lock from another smship: fields it lacks are None, fields it has beyond these are ignored.
    found = lock_holder({"user": "ann", "pid": "not a pid", "colour": "blue"})
    assert (found.user, found.token, found.since) == ("ann", None, None)
    assert not left_by_a_dead_process(found) and holder_text(found).startswith("ann@None")
    assert lock_holder(None) == LockHolder()
