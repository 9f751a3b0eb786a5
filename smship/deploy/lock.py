"""The environment's deploy lock, held on every host of the environment.

An atomic ``mkdir`` on each host; a second deploy finds it and is refused
with the holder's name.  The lock is released on every exit path, Ctrl-C
included, and only by the token that took it.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import time
from contextlib import contextmanager
from typing import Iterator

from smship.errors import SmshipError
from smship.layout import Layout
from smship.remote import call_agent
from smship.ssh import Fleet, Target


class LockHeld(SmshipError):
    pass


def lock_path(layout: Layout) -> str:
    return f"{layout.shared}/deploy.lock"


def holder_text(holder: dict) -> str:
    if not holder.get("user"):
        return "an unknown holder"
    age = int(time.time() - holder.get("since", time.time()))
    return f"{holder['user']}@{holder.get('machine')} ({holder.get('command')}, {age}s ago, pid {holder.get('pid')})"


def new_holder(command: str) -> dict:
    return {"token": secrets.token_hex(16), "user": getpass.getuser(), "machine": socket.gethostname(),
            "pid": os.getpid(), "since": time.time(), "command": command}


@contextmanager
def environment_lock(fleet: Fleet, targets: list[Target], layout: Layout, command: str) -> Iterator[dict]:
    """Hold the lock on every target for the ``with`` block, or raise :class:`LockHeld`."""
    holder = new_holder(command)
    path = lock_path(layout)
    answers = fleet.map(lambda t: call_agent(fleet, t, {"op": "lock", "path": path, "holder": holder}), targets)
    taken = [name for name, answer in answers.items() if isinstance(answer, dict) and answer.get("ok")]
    try:
        for name, answer in answers.items():
            if isinstance(answer, BaseException):
                raise SmshipError(f"could not take the deploy lock on {name}: {answer}")
            if not answer.get("ok"):
                raise LockHeld(f"{name}: another deploy holds the lock: {holder_text(answer['holder'])}; "
                               f"wait for it, or if it died run 'smship unlock ENV'")
        yield holder
    finally:
        release = {"op": "unlock", "path": path, "token": holder["token"]}
        fleet.map(lambda t: call_agent(fleet, t, release), [t for t in targets if t.name in taken])
