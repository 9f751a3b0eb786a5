"""Work begun ahead: run in a thread of its own while the caller does something else, taken later."""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Ahead(Generic[T]):
    """``work()`` under way in a daemon thread (Ctrl-C leaves it behind); :meth:`take` gives its
    result, or raises its exception in the taker's thread."""

    def __init__(self, work: Callable[[], T], name: str) -> None:
        self.seconds = 0.0
        self._result: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), name=name, daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        began = time.monotonic()
        try:
            self._result = work()
        except BaseException as exc:   # raised in the taker's thread
            self._error = exc
        self.seconds = time.monotonic() - began

    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self) -> None:
        """Until the work has ended (Ctrl-C stops the wait)."""
        self._thread.join()

    def take(self) -> T:
        self.wait()
        if self._error is not None:
            raise self._error
        return self._result
