"""Saying, while a caller waits on work that outlasts a notice interval, who it still waits for."""

from __future__ import annotations

import time
from typing import Callable


def notify_until_done(wait_for: Callable[[float], bool], pending: Callable[[], list[str]],
                      waiting: Callable[[list[str], float], None], began: float, every: float) -> None:
    """Until ``wait_for(seconds)`` (which waits at most that long) says the work is done, call
    ``waiting(pending(), seconds since began)`` at each multiple of ``every`` seconds since ``began``
    that comes while it is not (and some are still pending)."""
    while True:
        mark = began + (int((time.monotonic() - began) // every) + 1) * every
        if wait_for(max(0.0, mark - time.monotonic())):
            return
        names = pending()
        if names:
            waiting(names, time.monotonic() - began)
