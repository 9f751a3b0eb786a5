"""The environment's deploy lock, held on every host of the environment.

On each host a directory holding its holder, renamed into place complete
(see the agent's ``lock``); a second deploy, or a provision, finds it and is
refused with the holder's name.  The lock is released on every exit path, Ctrl-C
included, and only by the token that took it.
"""

from __future__ import annotations

import getpass
import os
import secrets
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from smship.ahead import Ahead
from smship.errors import SmshipError
from smship.layout import Layout
from smship.remote import client as agent
from smship.remote.client import LockHolder
from smship.ssh import Fleet, Target


class LockHeld(SmshipError):
    pass


def lock_path(layout: Layout) -> str:
    return f"{layout.shared}/deploy.lock"


def holder_text(holder: LockHolder) -> str:
    if not holder.user:
        return "an unknown holder"
    age = int(time.time() - (time.time() if holder.since is None else holder.since))
    return f"{holder.user}@{holder.machine} ({holder.command}, {age}s ago, pid {holder.pid})"


BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str | None:
    """This machine's boot: a PID names a process only within one boot."""
    try:
        with open(BOOT_ID) as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def new_holder(command: str) -> LockHolder:
    return LockHolder(token=secrets.token_hex(16), user=getpass.getuser(), machine=socket.gethostname(),
                      pid=os.getpid(), boot_id=boot_id(), since=time.time(), command=command)


def left_by_a_dead_process(holder: LockHolder) -> bool:
    """A lock taken on this machine by a process that no longer exists (it was killed, or lost its host).

    Judged by machine, boot and PID: after a reboot the PID may name
    another process, so a lock from an earlier boot is stale whatever runs
    under its PID now.
    """
    if holder.machine != socket.gethostname() or not isinstance(holder.pid, int):
        return False
    ours = boot_id()
    if holder.boot_id and ours and holder.boot_id != ours:
        return True
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class HeldLock:
    """The lock as taken: who holds it, on which hosts, and which of them were drained from the lb then."""
    holder: LockHolder
    hosts: frozenset[str]
    # No deploy drains or puts back a host while this lock is held, so a roll under it
    # can count on what the lock found (see smship.steps.roll.Drainer).
    drained: frozenset[str]
    path: str = ""
    # Hosts whose lock a command's last exchange already gave back (see smship.steps.record).
    released: set[str] = field(default_factory=set, compare=False)

    def still_held(self) -> list[str]:
        return sorted(self.hosts - self.released)

    def release_request(self) -> agent.Request[agent.LockAnswer]:
        """The unlock of this holder's lock, to be sent with a command's last requests."""
        return agent.unlock(self.path, self.holder.token)

    def given_back(self, name: str, answer) -> None:
        """``answer`` (a LockAnswer, or the error of an unlock that failed) to :meth:`release_request`
        on ``name``: released only when the host said so; the ``with`` block's end asks the others again."""
        if isinstance(answer, agent.LockAnswer) and answer.ok:
            self.released.add(name)


@contextmanager
def environment_lock(fleet: Fleet, targets: list[Target], layout: Layout, command: str,
                     warn=None) -> Iterator[HeldLock]:
    """Hold the lock on every target for the ``with`` block, or raise :class:`LockHeld`."""
    holder = new_holder(command)
    path = lock_path(layout)

    def take(target: Target) -> agent.LockAnswer:
        answer = agent.ask(fleet, target, agent.lock(path, holder, layout.drain_flag))
        if not answer.ok and left_by_a_dead_process(answer.holder):
            if warn:
                warn(f"{target.name}: removing a stale deploy lock: {holder_text(answer.holder)}, "
                     "whose process is gone")
            agent.ask(fleet, target, agent.unlock(path, answer.holder.token))
            answer = agent.ask(fleet, target, agent.lock(path, holder, layout.drain_flag))
        return answer

    answers = fleet.map(take, targets)
    taken = [name for name, answer in answers.succeeded.items() if answer.ok]
    held = None
    try:
        for name in answers:
            if name in answers.failed:
                raise SmshipError(f"could not take the deploy lock on {name}: {answers.failed[name]}")
            if answers.succeeded[name].error:
                raise SmshipError(f"could not take the deploy lock on {name}: {answers.succeeded[name].error}")
            if not answers.succeeded[name].ok:
                raise LockHeld(f"{name}: another deploy holds the lock: {holder_text(answers.succeeded[name].holder)}; "
                               f"wait for it, or if it died run 'smship unlock ENV'")
        held = HeldLock(holder, frozenset(taken), frozenset(n for n in taken if answers.succeeded[n].drained), path)
        yield held
    finally:
        left = set(held.still_held()) if held is not None else set(taken)
        released = agent.ask_all(fleet, agent.unlock(path, holder.token), [t for t in targets if t.name in left])
        stuck = sorted(released.failed)
        if stuck and warn:
            warn(f"the deploy lock is still held on {', '.join(stuck)} (unreachable): the next deploy from "
                 "this machine removes it, or run 'smship unlock ENV' from another")


class LockAhead:
    """The lock taken in a thread of its own while the command still checks (the checklist needs no lock,
    nor the lock the checklist): ``with`` it holds the lock as :func:`environment_lock` does; a command
    that stops first gives it back with :meth:`abandon`. What the taking warns of is said when it is
    entered or abandoned, so it never lands inside the checklist's lines."""

    def __init__(self, fleet: Fleet, targets: list[Target], layout: Layout, command: str, warn=None):
        self._warn, self._said = warn, []
        self._lock = environment_lock(fleet, targets, layout, command, warn=self._said.append)
        self._taking = Ahead(self._lock.__enter__, "smship-lock")

    def _say(self) -> None:
        said, self._said[:] = list(self._said), []
        for message in said if self._warn else ():
            self._warn(message)

    def __enter__(self) -> HeldLock:
        try:
            return self._taking.take()
        finally:
            self._say()

    def __exit__(self, *exc_info) -> bool | None:
        try:
            return self._lock.__exit__(*exc_info)
        finally:
            self._say()

    def abandon(self) -> BaseException | None:
        """The command stops before it needs the lock: given back once taken (a taking that failed gave
        back what it had). Why the lock could not be taken, if it could not."""
        try:
            self._taking.take()
        except BaseException as refused:
            self._say()
            return refused
        self.__exit__(None, None, None)
        return None
