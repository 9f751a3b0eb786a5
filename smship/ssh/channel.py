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
from typing import Callable, TypeVar

import paramiko

from smship.ahead import Ahead
from smship.ssh.values import NO_EXIT

CHUNK = 64 * 1024


class ChannelTimedOut(Exception):
    """The command did not end within its timeout; its channel was closed. Carries what it printed."""

    def __init__(self, stdout: bytes, stderr: bytes) -> None:
        super().__init__("timed out")
        self.stdout, self.stderr = stdout, stderr


class ConnectionLost(Exception):
    """The connection went down under the command."""


T = TypeVar("T")


def off_the_main_thread(work: Callable[[], T]) -> T:
    """``work()``, paramiko's calls, in a thread of its own when the caller is the main thread.

    Ctrl-C raises KeyboardInterrupt in the main thread between any two bytecodes, and paramiko takes
    some locks (the transport's send lock among them) with an ``acquire()`` a step before the ``try``
    that releases them: an interrupt there leaves the lock taken, and every later command on that
    connection, from any thread (a deploy's unlock among them), waits for it forever. Here the
    interrupt lands in the caller's wait, and the exchange goes on in its thread, as it would on a
    remote host whose operator closed the terminal.
    """
    if threading.current_thread() is not threading.main_thread():
        return work()
    return Ahead(work, "smship-ssh").take()


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
        self.channel = off_the_main_thread(lambda: _open(transport, line, timeout))
        # A plain run feeds all its stdin in finish; only a command begun ahead has a head to send now.
        self._head = threading.Thread(target=_feed, args=(self.channel, head, False), daemon=True,
                                      name="smship-ssh-stdin") if head else None
        if self._head is not None:
            self._head.start()

    def cancel(self) -> None:
        off_the_main_thread(self.channel.close)

    def finish(self, tail: bytes | None, timeout: float | None) -> Exchange:
        """Feed ``tail`` and close stdin (so a command reading it never hangs), then wait for the end;
        raises ChannelTimedOut or ConnectionLost."""
        return off_the_main_thread(lambda: self._finish(tail, timeout))

    def _finish(self, tail: bytes | None, timeout: float | None) -> Exchange:
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
    return off_the_main_thread(lambda: Running(transport, line, None, timeout).finish(stdin, timeout))


def _open(transport: paramiko.Transport, line: str, timeout: float | None) -> paramiko.Channel:
    try:
        channel = transport.open_session(timeout=timeout)
        channel.exec_command(line)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise ConnectionLost(str(exc) or type(exc).__name__) from exc
    return channel


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
