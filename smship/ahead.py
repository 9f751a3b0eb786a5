"""Work begun ahead: run in a thread of its own while the caller does something else, taken later."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Ahead(Generic[T]):
    """``work()`` under way in a daemon thread (Ctrl-C leaves it behind); :meth:`take` gives its
    result, or raises its exception in the taker's thread.

    Its end is an Event, not the thread's join: a ``Thread.join()`` that Ctrl-C interrupts while the
    thread still runs marks it as stopped (CPython 3.11 releases the lock the running thread holds), and
    every later join returns at once; a wait on an Event can be interrupted and begun again."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self.seconds = 0.0
        self._result: T | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        began = time.monotonic()
        try:
            self._result = work()
        except BaseException as exc:   # raised in the taker's thread
            self._error = exc
        finally:
            self.seconds = time.monotonic() - began
            self._done.set()

    def running(self) -> bool:
        return not self._done.is_set()

    def wait(self, seconds: float | None = None) -> bool:
        """Until the work has ended, or ``seconds`` passed (Ctrl-C stops the wait): whether it ended."""
        return self._done.wait(seconds)

    def take(self) -> T:
        self.wait()
        if self._error is not None:
            raise self._error
        return self._result


@contextmanager
def ctrl_c_noted() -> Iterator[list[int]]:
    """Ctrl-C only noted while the block runs (the list it yields says whether one came); the handler
    before is back at its end. A Ctrl-C raised between a thread's start and the code that waits for
    it would leave the thread unknown to the waiter. Blocking SIGINT in this thread is not enough: the
    kernel hands the signal to any thread that does not block it (the SSH library's, a build's), and Python
    then runs its handler here all the same. Only the main thread ever sees KeyboardInterrupt: elsewhere
    this notes nothing."""
    noted: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def raise_ctrl_c() -> None:
    """The Ctrl-C a block noted, raised now, as the SIGINT handler in place would."""
    handler = signal.getsignal(signal.SIGINT)
    if handler in (signal.SIG_IGN, None):
        return
    if callable(handler):
        handler(signal.SIGINT, None)
    else:
        signal.raise_signal(signal.SIGINT)


def waited_through_ctrl_c(wait: Callable[[], None], on_first: Callable[[], None], interrupted: bool = False) -> bool:
    """``wait()`` to its end, Ctrl-C or not: the first Ctrl-C (``interrupted``: it came already) calls
    ``on_first()``, to say what is waited for, and waits on; a second one raises. Whether a Ctrl-C came,
    for the caller to stop once the wait is over."""
    if interrupted:
        on_first()
    while True:
        try:
            wait()
            return interrupted
        except KeyboardInterrupt:
            if interrupted:
                raise
            interrupted = True
            on_first()


def to_its_end(work: Callable[[], T], name: str, on_first: Callable[[], None]) -> tuple[T, bool]:
    """``work()`` in a thread of its own, waited for to its end through one Ctrl-C (see
    :func:`waited_through_ctrl_c`; a second one leaves it running alone): its result (its exception is
    raised here), and whether a Ctrl-C came."""
    with ctrl_c_noted() as noted:
        running = Ahead(work, name)
    interrupted = waited_through_ctrl_c(running.wait, on_first, interrupted=bool(noted))
    return running.take(), interrupted
