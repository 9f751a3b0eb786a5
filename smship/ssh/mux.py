"""One OpenSSH master connection per host, shared by the ``rsync`` processes that copy to it.

rsync runs the real ``ssh``, and each ssh would open a connection of its own: a key exchange and a
login, about 0.15 s of both machines' CPU, three times per host in a deploy (release tree,
wheelhouse, front end). A master logs in once and each rsync's ssh opens a session on it. The master
can be opened ahead (:meth:`Masters.open`), while the command does other work. A host whose master
does not open is copied to over a connection of rsync's own, as before, so its failure reads the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading

from smship.ssh.argv import master_argv, master_exit_argv
from smship.ssh.values import Endpoint, SSHOptions

# An idle master ends on its own after this many seconds: should smship be killed, no connection
# outlives it for longer.
PERSIST = 60


class Masters:
    """The masters of one Fleet; :meth:`close` ends them all."""

    def __init__(self, options: SSHOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._paths: dict[str, str] = {}
        self._opening: dict[str, tuple[subprocess.Popen, Endpoint]] = {}
        self._failed: set[str] = set()

    def _path(self, name: str) -> str:
        # A socket's path is short (108 bytes at most): a private directory, a number per host.
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="smship-ssh-")
        return self._paths.setdefault(name, os.path.join(self._dir, str(len(self._paths))))

    def open(self, name: str, endpoint: Endpoint) -> None:
        """Begin opening ``name``'s master, unless it is open, opening, or failed; does not wait."""
        with self._lock:
            if name in self._failed:
                return
            known = self._opening.get(name)
            path = self._path(name)
            if known is not None and (known[0].poll() is None or os.path.exists(path)):
                return
            process = subprocess.Popen(master_argv(endpoint, self.options, path, PERSIST),
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            self._opening[name] = (process, endpoint)

    def path(self, name: str, endpoint: Endpoint) -> str | None:
        """The socket of ``name``'s master once it is open (opening it if need be); None when it
        could not open."""
        try:
            self.open(name, endpoint)
        except OSError:
            return None
        with self._lock:
            if name in self._failed or name not in self._opening:
                return None
            process, path = self._opening[name][0], self._paths[name]
        wait = self.options.connect_timeout * (1 + len(endpoint.jumps)) + 5
        try:
            code = process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            code = None
        if code == 0 and os.path.exists(path):
            return path
        with self._lock:
            self._failed.add(name)
        return None

    def close(self) -> None:
        """Ask every open master to close its connection, and remove their sockets' directory."""
        with self._lock:
            opening, paths, directory = dict(self._opening), dict(self._paths), self._dir
            self._opening.clear()
            self._paths.clear()
            self._dir = None
        closing = []
        for name, (process, endpoint) in opening.items():
            if process.poll() is None:
                process.kill()
                process.wait()
            elif os.path.exists(paths[name]):
                closing.append(subprocess.Popen(master_exit_argv(endpoint, paths[name]), stdin=subprocess.DEVNULL,
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for process in closing:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)
