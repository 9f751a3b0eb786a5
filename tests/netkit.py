"""Loopback helpers for tests that start real servers: a free port, waiting for one to listen, and a
server on a unix socket as a web slot's uvicorn listens."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable


class UnixServer:
    """Accepts on a unix socket at ``path`` in a thread and hands each connection to ``handle``."""

    def __init__(self, path, handle: Callable[[socket.socket], None]):
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self._handle = handle
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                self._handle(conn)

    def close(self):
        # shutdown wakes the accept blocked in the thread; a bare close would leave it on a reused fd.
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(5)


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


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """(certificate, key) files of a fresh self-signed P-256 certificate for ``name``, made by openssl."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-subj", f"/CN={name}", "-days", "2", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key
