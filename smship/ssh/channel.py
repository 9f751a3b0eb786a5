"""One command on an open SSH connection, on a session channel of its own.

Each wait here blocks until the server's packet arrives (paramiko wakes it).
A polling runner that checks for output and exit every 10 ms, and joins its
reader threads the same way, costs every command tens of milliseconds of
wall time for nothing: a deploy's roll is a chain of such commands.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import paramiko

from smship.ssh.values import NO_EXIT

CHUNK = 64 * 1024


class ChannelTimedOut(Exception):
    """The command did not end within its timeout; its channel was closed. Carries what it printed."""

    def __init__(self, stdout: bytes, stderr: bytes) -> None:
        super().__init__("timed out")
        self.stdout, self.stderr = stdout, stderr


class ConnectionLost(Exception):
    """The connection went down under the command."""


@dataclass(frozen=True)
class Exchange:
    exit_code: int              # NO_EXIT: the process ended without a status (a signal, or its session torn down)
    stdout: bytes
    stderr: bytes


class Running:
    """A command started on a channel of its own, its stdin still open: the rest of its stdin, its
    end and its outcome come with :meth:`finish`, or :meth:`cancel` closes it (its stdin then ends)."""

    def __init__(self, transport: paramiko.Transport, line: str, head: bytes | None, timeout: float | None):
        self.transport = transport
        try:
            self.channel = transport.open_session(timeout=timeout)
            self.channel.exec_command(line)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from exc
        # A plain run feeds all its stdin in finish; only a command begun ahead has a head to send now.
        self._head = threading.Thread(target=_feed, args=(self.channel, head, False), daemon=True,
                                      name="smship-ssh-stdin") if head else None
        if self._head is not None:
            self._head.start()

    def cancel(self) -> None:
        self.channel.close()

    def finish(self, tail: bytes | None, timeout: float | None) -> Exchange:
        """Feed ``tail`` and close stdin (so a command reading it never hangs), then wait for the end;
        raises ChannelTimedOut or ConnectionLost."""
        channel, deadline = self.channel, None if timeout is None else time.monotonic() + timeout
        stderr = bytearray()

        def feed_tail():
            if self._head is not None:
                self._head.join()
            _feed(channel, tail, True)
        # Daemons: a channel closed under them ends their waits at once.
        helpers = [threading.Thread(target=feed_tail, daemon=True, name="smship-ssh-stdin"),
                   threading.Thread(target=_drain_stderr, args=(channel, stderr), daemon=True,
                                    name="smship-ssh-stderr")]
        for helper in helpers:
            helper.start()
        stdout = bytearray()
        try:
            while chunk := _recv(channel, deadline):
                stdout += chunk
            if not channel.status_event.wait(_left(deadline)):
                raise socket.timeout
            for helper in helpers:
                helper.join(_left(deadline))
        except socket.timeout:
            channel.close()
            raise ChannelTimedOut(bytes(stdout), bytes(stderr)) from None
        code = channel.exit_status if channel.exit_status_ready() else -1
        if code == -1 and not self.transport.is_active():
            raise ConnectionLost("the connection closed")
        channel.close()
        return Exchange(NO_EXIT if code == -1 else code, bytes(stdout), bytes(stderr))


def run_on(transport: paramiko.Transport, line: str, stdin: bytes | None, timeout: float | None) -> Exchange:
    """Run ``line`` through ``transport``'s server with ``stdin`` (see Running.finish)."""
    return Running(transport, line, None, timeout).finish(stdin, timeout)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _recv(channel: paramiko.Channel, deadline: float | None) -> bytes:
    """The next stdout bytes, b"" at its end; socket.timeout once ``deadline`` has passed, however
    steadily the command still writes."""
    left = _left(deadline)
    if left == 0.0:
        raise socket.timeout
    channel.settimeout(left)
    return channel.recv(CHUNK)


def _feed(channel: paramiko.Channel, data: bytes | None, last: bool) -> None:
    try:
        if data:
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                channel.sendall(view[start:start + CHUNK])
        if last:
            channel.shutdown_write()
    except (OSError, EOFError, paramiko.SSHException):
        # The command ended (or its channel closed) before reading all of it: its exit says the rest.
        pass


def _drain_stderr(channel: paramiko.Channel, into: bytearray) -> None:
    try:
        while chunk := channel.recv_stderr(CHUNK):
            into += chunk
    except (OSError, EOFError, paramiko.SSHException):
        pass
