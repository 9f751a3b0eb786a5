"""The fleet: one long-lived connection per host, parallel calls, and what each host gave back."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Generic, Iterable, Iterator, Mapping, TypeVar

import paramiko
from fabric import Config, Connection

from smship.ahead import ctrl_c_noted, raise_ctrl_c
from smship.command import Command
from smship.notices import notify_until_done
from smship.ssh.channel import ChannelTimedOut, ConnectionLost, Exchange, Running, off_the_main_thread, run_on
from smship.ssh.argv import _load_ssh_config, remote_line, resolve, rsync_argv, stream_argv
from smship.ssh.hostkeys import _AcceptNewPolicy, _StrictPolicy, _describe_failure, read_known_hosts
from smship.ssh.mux import Masters
from smship.ssh.rsync import _rsync_error, parse_rsync_stats
from smship.ssh.values import (CommandError, ConnectError, Endpoint, NO_EXIT, Result, RsyncResult,
                               SSHOptions, SudoPasswordRequired, Target, _last_line)

T = TypeVar("T")
# Seconds between the notices of a fleet-wide step some hosts have not finished (see Fleet.map).
WAIT_NOTICE_EVERY = 30.0


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def _text(wire: bytes) -> str:
    """A command's whole output as text (decoded once at the end: a UTF-8 sequence split between two
    packets stays whole)."""
    return wire.decode("utf-8", "replace")


_SUDO_REFUSALS = ("a password is required", "a terminal is required",
                  "no askpass program")


def _send_at_once(connection: Connection) -> None:
    """Turn off Nagle's algorithm on a connection's TCP socket (not on a channel through a jump host).

    A command is a handful of small SSH packets each way (channel open, exec,
    stdin, exit status); with Nagle, one that follows an unacknowledged packet
    waits for the peer's delayed ACK, tens of milliseconds: in the lab that
    doubled the wall time of every command (47 ms against 22 ms for `true`, 125
    ms against 63 ms for an agent request).
    """
    sock = getattr(connection.transport, "sock", None)
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _sudo_refused(command: Command, exit_code: int, stderr: str) -> bool:
    if not (command.sudo or command.user) or exit_code != 1:
        return False
    first = stderr.strip().splitlines()[:1]
    return bool(first) and first[0].startswith("sudo:") and any(
        marker in first[0] for marker in _SUDO_REFUSALS)


# ---------------------------------------------------------------------------
# Fleet
# ---------------------------------------------------------------------------


class Fleet:
    """One long-lived SSH connection per host for a whole smship command.

    Connections open lazily on first use and are reused by every later
    operation on that host (rsync's ssh shares one of its own per host);
    :meth:`close` (or leaving the ``with`` block) closes them all.
    ``round_trips`` counts remote exchanges per host: each exec channel,
    upload and rsync process is one.
    """

    def __init__(self, targets: Iterable[Target] = (),
                 options: SSHOptions | None = None) -> None:
        self.options = options or SSHOptions()
        self.targets: dict[str, Target] = {}
        self.round_trips: dict[str, int] = {}
        self._ssh_config = _load_ssh_config(self.options.ssh_config)
        self._known_hosts = read_known_hosts(self.options.known_hosts)
        self._endpoints: dict[str, Endpoint] = {}
        self._connections: dict[str, Connection] = {}
        self._jump_connections: dict[Endpoint, Connection] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._jump_lock = threading.Lock()
        self._masters = Masters(self.options)
        for target in targets:
            self.add(target)

    # -- bookkeeping -------------------------------------------------------

    def add(self, target: Target) -> Target:
        """Register a target (idempotent for an identical one)."""
        with self._lock:
            known = self.targets.get(target.name)
            if known is not None and known != target:
                raise ValueError(f"two different targets named {target.name}")
            self.targets[target.name] = target
            self.round_trips.setdefault(target.name, 0)
            self._host_locks.setdefault(target.name, threading.Lock())
        return target

    def _target(self, target: Target | str) -> Target:
        if isinstance(target, Target):
            return self.add(target)
        try:
            return self.targets[target]
        except KeyError:
            raise KeyError(f"unknown host {target!r}") from None

    def endpoint(self, target: Target | str) -> Endpoint:
        """Where ``target`` really is once the SSH config is applied."""
        target = self._target(target)
        with self._lock:
            if target.name not in self._endpoints:
                self._endpoints[target.name] = resolve(
                    target, self.options, self._ssh_config)
            return self._endpoints[target.name]

    def _count(self, name: str) -> None:
        with self._lock:
            self.round_trips[name] = self.round_trips.get(name, 0) + 1

    # -- connections -------------------------------------------------------

    def _new_connection(self, endpoint: Endpoint,
                        gateway: Connection | None) -> Connection:
        timeout = self.options.connect_timeout
        connect_kwargs: dict = {
            # fabric rounds its own connect_timeout to whole seconds; the
            # paramiko kwargs keep fractions and also bound the banner and
            # auth phases, where a stuck host would otherwise hang us.
            "timeout": timeout,
            "banner_timeout": timeout,
            "auth_timeout": timeout,
        }
        if endpoint.identity is not None:
            connect_kwargs["key_filename"] = [str(endpoint.identity)]
        # An empty SSHConfig and lazy config keep fabric from reading
        # ~/.ssh/config or ~/.fabric.yaml on its own: we already resolved
        # the endpoint and want the rsync ssh to see the same values.
        config = Config(ssh_config=paramiko.SSHConfig(), lazy=True)
        connection = Connection(
            endpoint.host, user=endpoint.user, port=endpoint.port,
            config=config, connect_kwargs=connect_kwargs,
            gateway=gateway if gateway is not None else False,
        )
        client = connection.client
        # paramiko looks non-22 ports up as "[host]:port", like ssh.
        keys = client.get_host_keys()
        for entry in self._known_hosts:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)
        if self.options.accept_unknown_hosts:
            client.set_missing_host_key_policy(
                _AcceptNewPolicy(self.options.known_hosts))
        else:
            client.set_missing_host_key_policy(_StrictPolicy())
        return connection

    def _gateway(self, jumps: tuple[Endpoint, ...]) -> Connection | None:
        """Chain jump connections, sharing one per bastion."""
        gateway = None
        for hop in jumps:
            key = hop if gateway is None else None
            if key is not None and key in self._jump_connections:
                gateway = self._jump_connections[key]
                continue
            gateway = self._new_connection(hop, gateway)
            if key is not None:
                self._jump_connections[key] = gateway
        return gateway

    def _open_gateway(self, name: str,
                      endpoint: Endpoint) -> Connection | None:
        """Open the jump chain for ``endpoint`` (shared, so serialised)."""
        if not endpoint.jumps:
            return None
        with self._jump_lock:
            with self._lock:
                gateway = self._gateway(endpoint.jumps)
            assert gateway is not None  # jumps is not empty
            try:
                # Opening the last hop opens the earlier ones through it.
                gateway.open()
                _send_at_once(self._jump_connections.get(endpoint.jumps[0], gateway))
            except Exception as exc:  # every failure becomes one line
                hop = endpoint.jumps[-1]
                cause = _describe_failure(exc, hop, self.options)
                raise ConnectError(
                    name, endpoint, f"jump host {hop}: {cause}") from exc
        return gateway

    def connection(self, target: Target | str) -> Connection:
        """The open connection to ``target``; raises :class:`ConnectError`."""
        target = self._target(target)
        connection = self._connections.get(target.name)
        if connection is not None and connection.is_connected:
            return connection
        return off_the_main_thread(lambda: self._connect(target))

    def _connect(self, target: Target) -> Connection:
        endpoint = self.endpoint(target)
        with self._host_locks[target.name]:
            connection = self._connections.get(target.name)
            if connection is not None and connection.is_connected:
                return connection
            if connection is not None:
                connection.close()
            gateway = self._open_gateway(target.name, endpoint)
            try:
                connection = self._new_connection(endpoint, gateway)
                connection.open()
                _send_at_once(connection)
            except Exception as exc:  # every failure becomes one line
                cause = _describe_failure(exc, endpoint, self.options)
                raise ConnectError(target.name, endpoint, cause) from exc
            self._connections[target.name] = connection
            return connection

    def prepare_rsync(self, targets: Iterable[Target | str]) -> None:
        """Begin opening, without waiting, the connection :meth:`rsync` will copy to each of ``targets``
        over (see :mod:`smship.ssh.mux`): it logs in while the caller does other work."""
        for target in targets:
            target = self._target(target)
            try:
                self._masters.open(target.name, self.endpoint(target))
            except OSError:  # rsync connects on its own then
                pass

    def close(self) -> None:
        """Close every connection, jump hosts last, and rsync's."""
        self._masters.close()
        with self._lock:
            connections = list(self._connections.values())
            jumps = list(self._jump_connections.values())
            self._connections.clear()
            self._jump_connections.clear()
        for connection in [*connections, *jumps]:
            try:
                connection.close()
            except Exception:  # closing is best effort; nothing to report
                pass

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- operations --------------------------------------------------------

    def run(self, target: Target | str, command: Command | str, *,
            timeout: float | None = None, check: bool = False) -> Result:
        """Run one command; output is captured, never printed.

        A plain string is accepted for internal helpers only and is sent
        as-is; everything built from inventory data must be a Command.
        """
        target = self._target(target)
        if isinstance(command, str):
            command = Command(("sh", "-c", command), description=command)
        started = time.monotonic()
        try:
            connection = self.connection(target)
        except ConnectError as exc:
            if check:
                raise
            return Result(target.name, str(command), NO_EXIT,
                          duration=time.monotonic() - started, error=str(exc))
        self._count(target.name)
        result = self._exec(connection, target.name, command, timeout,
                            started)
        if check and not result.ok:
            if _sudo_refused(command, result.exit_code, result.stderr):
                raise SudoPasswordRequired(result)
            raise CommandError(result)
        return result

    def begin(self, target: Target | str, command: Command) -> "Begun":
        """Start ``command`` now, fed ``command.stdin`` but with its stdin left open: the rest of it
        comes with :meth:`Begun.finish`, which gives the Result :meth:`run` would have. For a program
        whose start-up can run ahead of the request it is waiting for; one round trip in all."""
        target = self._target(target)
        started = time.monotonic()
        try:
            connection = self.connection(target)
        except ConnectError as exc:
            # Said by finish, as run says it: a host that did not answer now is not asked twice.
            return Begun(self, target, command, started=started, unreachable=exc)
        self._count(target.name)
        try:
            running = Running(connection.transport, remote_line(command, connection.user), command.stdin, None)
        except ConnectionLost:
            # Run anew, whole, by finish, on a new connection.
            return Begun(self, target, command)
        return Begun(self, target, command, connection, running, started)

    def _exec(self, connection: Connection, name: str, command: Command,
              timeout: float | None, started: float) -> Result:
        return _outcome(connection, name, command, timeout, started,
                        lambda: run_on(connection.transport, remote_line(command, connection.user), command.stdin,
                                       timeout))

    def rsync(self, target: Target | str, local_dir: str | Path,
              remote_dir: str, *, link_dest: str | None = None,
              delete: bool = True, excludes: Iterable[str] = (),
              sudo: bool = False, checksum: bool = False,
              chown: str | None = None, check: bool = False,
              timeout: float | None = None) -> RsyncResult:
        """Mirror ``local_dir``'s contents into ``remote_dir`` with rsync.

        Unchanged files are hard-linked from ``link_dest`` (a previous
        release) instead of copied.
        """
        target = self._target(target)
        endpoint = self.endpoint(target)
        argv = rsync_argv(endpoint, self.options, local_dir, remote_dir,
                          link_dest=link_dest, delete=delete,
                          excludes=excludes, sudo=sudo, checksum=checksum,
                          chown=chown, control_path=self._masters.path(target.name, endpoint))
        described = f"rsync {local_dir} -> {remote_dir}"
        self._count(target.name)
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            result = RsyncResult(
                target.name, described, NO_EXIT,
                duration=time.monotonic() - started,
                error=f"{target.name}: {described}: timed out after "
                      f"{timeout:g}s")
        except FileNotFoundError:
            result = RsyncResult(
                target.name, described, NO_EXIT,
                error=f"{target.name}: {described}: no local rsync or ssh "
                      f"binary; install rsync and openssh-client")
        else:
            stdout = proc.stdout.decode("utf-8", "replace")
            stderr = proc.stderr.decode("utf-8", "replace")
            stats = parse_rsync_stats(stdout)
            result = RsyncResult(
                target.name, described, proc.returncode, stdout=stdout,
                stderr=stderr, duration=time.monotonic() - started,
                bytes_sent=stats["bytes_sent"],
                bytes_received=stats["bytes_received"],
                files_transferred=stats["files_transferred"])
            result.error = _rsync_error(target.name, endpoint, result)
        if check and not result.ok:
            raise CommandError(result)
        return result

    def stream(self, target: Target | str,
               command: Command) -> subprocess.Popen:
        """Start ``command`` on ``target``; read its stdout as it comes.

        For output that has no end of its own (``journalctl -f``): the
        caller reads ``stdout`` line by line and terminates the process
        when done.  Its stdin stays open and empty for as long as the
        process lives, so a remote command can watch it and end with the
        connection (see :func:`until_disconnected`).
        """
        target = self._target(target)
        self._count(target.name)
        argv = stream_argv(self.endpoint(target), self.options, command)
        return subprocess.Popen(argv, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    # -- many hosts --------------------------------------------------------

    def map(self, fn: Callable[[Target], T],
            targets: Iterable[Target | str] | None = None,
            waiting: Callable[[list[str], float], None] | None = None,
            every: float | None = None) -> "FleetResult[T]":
        """Call ``fn(target)`` for every target, at most ``parallel`` at once.

        A host whose call raises lands in ``failed`` with its exception; the
        other hosts carry on.  Results keep the order targets were given in.
        ``waiting(hosts, seconds)`` is called in this thread every ``every``
        seconds (default WAIT_NOTICE_EVERY) while some hosts are still at work,
        naming them.
        """
        chosen = [self._target(t) for t in
                  (self.targets.values() if targets is None else targets)]
        if not chosen:
            return FleetResult({})
        outcomes: dict[str, T | Exception] = {}
        workers = min(self.options.parallel, len(chosen))
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers,
                                thread_name_prefix="smship-ssh") as pool:
            with _ctrl_c_held():
                futures = [(t.name, pool.submit(fn, t)) for t in chosen]
            if waiting is not None:
                notify_until_done(lambda seconds: not wait([f for _, f in futures], timeout=seconds)[1],
                                  lambda: [n for n, f in futures if not f.done()], waiting, began,
                                  every or WAIT_NOTICE_EVERY)
            for name, future in futures:
                try:
                    outcomes[name] = future.result()
                except Exception as exc:  # collected, reported per host
                    outcomes[name] = exc
        return FleetResult(outcomes)


def _outcome(connection: Connection, name: str, command: Command, timeout: float | None, started: float,
             exchange: Callable[[], Exchange]) -> Result:
    """What ``exchange()`` (the command on its channel) gave, as a Result: a timeout, a lost connection
    and sudo's refusal of a password each in one line naming the host."""
    described = str(command)
    try:
        outcome = exchange()
    except ChannelTimedOut as exc:
        return Result(
            name, described, NO_EXIT,
            stdout=_text(exc.stdout), stderr=_text(exc.stderr),
            duration=time.monotonic() - started,
            error=f"{name}: {described}: timed out after {timeout:g}s")
    except ConnectionLost as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Result(name, described, NO_EXIT,
                      duration=time.monotonic() - started,
                      error=f"{name}: {described}: connection lost: "
                            f"{first}", connection_lost=True)
    result = Result(name, described, outcome.exit_code,
                    stdout=_text(outcome.stdout),
                    stderr=_text(outcome.stderr),
                    duration=time.monotonic() - started)
    if _sudo_refused(command, result.exit_code, result.stderr):
        who = connection.user
        result.error = (
            f"{name}: {described}: sudo on this host needs a password "
            f"for user {who}; smship runs sudo non-interactively, so "
            f"grant {who} passwordless sudo (NOPASSWD) "
            f"[{_last_line(result.stderr)}]")
    return result


class Begun:
    """A command :meth:`Fleet.begin` started, waiting for the rest of its stdin."""

    def __init__(self, fleet: Fleet, target: Target, command: Command, connection: Connection | None = None,
                 running: Running | None = None, started: float = 0.0,
                 unreachable: ConnectError | None = None) -> None:
        self.fleet, self.target, self.command = fleet, target, command
        self._connection, self._running, self._started = connection, running, started
        self._unreachable = unreachable

    def finish(self, tail: bytes, timeout: float | None = None, description: str | None = None) -> Result:
        """The command's Result once ``tail`` (then the end of its stdin) was fed; ``description`` names it
        in the Result. A command whose host could not be reached fails as :meth:`Fleet.run` would; one
        whose connection was lost as it began is run anew, whole."""
        command = replace(self.command, stdin=(self.command.stdin or b"") + tail,
                          description=description or self.command.description)
        if self._unreachable is not None:
            return Result(self.target.name, str(command), NO_EXIT, duration=time.monotonic() - self._started,
                          error=str(self._unreachable))
        if self._running is None:
            return self.fleet.run(self.target, command, timeout=timeout)
        running, self._running = self._running, None
        return _outcome(self._connection, self.target.name, command, timeout, self._started,
                        lambda: running.finish(tail, timeout))

    def cancel(self) -> None:
        """Close it unfinished: the command reads the end of its stdin."""
        if self._running is not None:
            self._running.cancel()
            self._running = None


@contextmanager
def _ctrl_c_held() -> Iterator[None]:
    """Ctrl-C comes once every host's work is handed to a thread: one that landed while the pool started
    a thread would leave it unknown to the pool, whose exit would not wait for it, and its host's work (an
    activation) would go on after smship let go of the connection (see smship.ahead.ctrl_c_noted)."""
    with ctrl_c_noted() as noted:
        yield
    if noted:
        raise_ctrl_c()


class FleetResult(Mapping[str, "T | Exception"], Generic[T]):
    """What :meth:`Fleet.map` gave each host, in the order the hosts were given.

    ``succeeded`` maps a host to its value, ``failed`` to the exception its
    call raised; as a mapping, each host gives whichever it got.
    """

    def __init__(self, outcomes: Mapping[str, "T | Exception"]) -> None:
        self._outcomes = dict(outcomes)
        self.failed: dict[str, Exception] = {name: value for name, value in self._outcomes.items()
                                             if isinstance(value, BaseException)}
        self.succeeded: dict[str, T] = {name: value for name, value in self._outcomes.items()
                                        if name not in self.failed}

    def __getitem__(self, name: str) -> "T | Exception":
        return self._outcomes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._outcomes)

    def __len__(self) -> int:
        return len(self._outcomes)

    def __repr__(self) -> str:
        return f"FleetResult(succeeded={sorted(self.succeeded)}, failed={sorted(self.failed)})"

    @property
    def ok(self) -> bool:
        """Every host's call returned."""
        return not self.failed
