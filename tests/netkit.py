"""Loopback helpers for tests that start real servers: a free port, and waiting for one to listen."""

from __future__ import annotations

import socket
import time
from typing import Callable


def free_port(address: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float, why_not: Callable[[], str], alive: Callable[[], bool] = lambda: True,
                   address: str = "127.0.0.1") -> None:
    """Return once ``address:port`` accepts a connection; fail with ``why_not()`` when the server died
    (``alive``) or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            assert alive() and time.monotonic() < deadline, why_not()
            time.sleep(0.05)
