"""The SSH layer: the only module in smship that talks to fabric or paramiko.

Everything above this module hands over :class:`~smship.command.Command`
values; this module turns them into quoted remote lines, runs them over one
long-lived connection per host and reports :class:`Result` values.  The pure
builders (sudo wrapping, the atomic ``put`` script, the ``ssh``/``rsync``
argv) are plain functions so they can be tested without any host.

Host keys are checked strictly unless the operator opts in to trusting new
hosts; a changed key is always refused.  The real ``rsync`` binary is run
with an ``ssh`` command line generated from the same options, so both paths
reach the same host, as the same user, with the same key checks.
"""

from __future__ import annotations

import getpass
import io
import os
import re
import shlex
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Iterable, Iterator, Mapping, TypeVar

import paramiko
from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut

from smship.command import Command, script

__all__ = [
    "Target",
    "SSHOptions",
    "Endpoint",
    "Result",
    "RsyncResult",
    "SSHError",
    "ConnectError",
    "CommandError",
    "SudoPasswordRequired",
    "Fleet",
    "FleetResult",
    "resolve",
    "parse_jump",
    "remote_line",
    "put_command",
    "ssh_argv",
    "rsync_argv",
    "parse_rsync_stats",
    "iter_results",
]

T = TypeVar("T")

# Exit code reported when no remote exit status exists (connection failed,
# command timed out); real exit codes are 0..255.
NO_EXIT = -1


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One host to reach, independent of how the inventory describes it.

    ``address`` may be a host alias from the SSH config.  Values left at
    their defaults (``port`` 22, ``user``/``jump``/``identity`` unset) are
    filled from the SSH config, the way ``ssh`` treats its own defaults.
    ``jump`` is ``[user@]host[:port]``, several hops separated by commas.
    """

    name: str
    address: str
    port: int = 22
    user: str | None = None
    jump: str | None = None
    identity: Path | None = None


def _default_known_hosts() -> Path:
    return Path("~/.ssh/known_hosts").expanduser()


def _default_ssh_config() -> Path | None:
    path = Path("~/.ssh/config").expanduser()
    return path if path.is_file() else None


@dataclass(frozen=True)
class SSHOptions:
    """How to connect: shared by every host and by the rsync ``ssh``.

    Unknown or changed host keys fail the host unless
    ``accept_unknown_hosts`` is set, which trusts (and records) keys of
    hosts never seen before but still refuses a changed key.
    """

    known_hosts: Path | None = field(default_factory=_default_known_hosts)
    ssh_config: Path | None = field(default_factory=_default_ssh_config)
    accept_unknown_hosts: bool = False
    connect_timeout: float = 10
    parallel: int = 10

    def __post_init__(self) -> None:
        if self.parallel < 1:
            raise ValueError("parallel must be at least 1")
        if self.connect_timeout <= 0:
            raise ValueError("connect_timeout must be positive")


@dataclass(frozen=True)
class Endpoint:
    """A target after the SSH config was applied: what we really dial."""

    host: str
    port: int
    user: str
    identity: Path | None = None
    jumps: tuple["Endpoint", ...] = ()

    def __str__(self) -> str:
        return f"{self.user}@{_host_port(self.host, self.port)}"


@dataclass
class Result:
    """Outcome of one remote operation on one host.

    ``command`` is the command's description or quoted line; stdin is never
    part of it.  ``error`` is set for failures that are not a plain non-zero
    exit (unreachable host, timeout, sudo wanting a password).
    """

    host: str
    command: str
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None

    def summary(self) -> str:
        """One line fit for a terminal or a log."""
        if self.error:
            return self.error
        if self.ok:
            return f"{self.host}: {self.command}: ok ({self.duration:.2f}s)"
        last = _last_line(self.stderr) or _last_line(self.stdout)
        detail = f": {last}" if last else ""
        return (f"{self.host}: {self.command}: exit {self.exit_code}"
                f"{detail}")


@dataclass
class RsyncResult(Result):
    """A :class:`Result` plus what ``rsync --stats`` reported."""

    bytes_sent: int = 0
    bytes_received: int = 0
    files_transferred: int = 0


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


class SSHError(Exception):
    """Base class; ``str()`` is always a single line naming the host."""


class ConnectError(SSHError):
    """The host could not be reached, authenticated or trusted."""

    def __init__(self, name: str, endpoint: Endpoint, cause: str) -> None:
        self.name = name
        self.endpoint = endpoint
        self.cause = cause
        super().__init__(
            f"{name} ({_host_port(endpoint.host, endpoint.port)}): {cause}")


class CommandError(SSHError):
    """A remote command ran but failed (raised when ``check=True``)."""

    def __init__(self, result: Result) -> None:
        self.result = result
        super().__init__(result.summary())


class SudoPasswordRequired(CommandError):
    """``sudo -n`` refused because the remote sudo wants a password."""


# ---------------------------------------------------------------------------
# Pure builders
# ---------------------------------------------------------------------------


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def parse_jump(spec: str) -> list[tuple[str | None, str, int | None]]:
    """Split ``[user@]host[:port][,...]`` into (user, host, port) hops."""
    hops = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty hop in jump spec {spec!r}")
        user, _, hostport = part.rpartition("@")
        port: int | None = None
        if hostport.startswith("["):
            host, _, rest = hostport[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif hostport.count(":") == 1:
            host, _, port_text = hostport.partition(":")
            port = int(port_text)
        else:
            host = hostport
        if not host:
            raise ValueError(f"no host in jump spec {spec!r}")
        hops.append((user or None, host, port))
    return hops


def _lookup(ssh_config: paramiko.SSHConfig | None, host: str) -> dict:
    return dict(ssh_config.lookup(host)) if ssh_config is not None else {}


def _load_ssh_config(path: Path | None) -> paramiko.SSHConfig | None:
    if path is None:
        return None
    return paramiko.SSHConfig.from_path(str(path))


def resolve(target: Target, options: SSHOptions,
            ssh_config: paramiko.SSHConfig | None = None) -> Endpoint:
    """Apply the SSH config (HostName, User, Port, IdentityFile, ProxyJump).

    Explicit target values win; the config fills what the target left at
    its default.  Jump hops are looked up in the config too, and borrow the
    target's user and key when nothing else names one, since a bastion
    usually admits the same deploy key.
    """
    if ssh_config is None:
        ssh_config = _load_ssh_config(options.ssh_config)
    found = _lookup(ssh_config, target.address)
    host = found.get("hostname", target.address)
    port = target.port
    if port == 22 and "port" in found:
        port = int(found["port"])
    user = target.user or found.get("user") or getpass.getuser()
    identity = target.identity
    if identity is None and found.get("identityfile"):
        identity = Path(found["identityfile"][0]).expanduser()
    jump = target.jump or found.get("proxyjump")
    jumps: tuple[Endpoint, ...] = ()
    if jump and jump.lower() != "none":
        jumps = tuple(_resolve_hop(hop, ssh_config, user, identity)
                      for hop in parse_jump(jump))
    return Endpoint(host=host, port=port, user=user, identity=identity,
                    jumps=jumps)


def _resolve_hop(hop: tuple[str | None, str, int | None],
                 ssh_config: paramiko.SSHConfig | None,
                 user: str, identity: Path | None) -> Endpoint:
    hop_user, hop_host, hop_port = hop
    found = _lookup(ssh_config, hop_host)
    hop_identity = identity
    if found.get("identityfile"):
        hop_identity = Path(found["identityfile"][0]).expanduser()
    return Endpoint(
        host=found.get("hostname", hop_host),
        port=hop_port or int(found.get("port", 22)),
        user=hop_user or found.get("user") or user,
        identity=hop_identity,
    )


def remote_line(command: Command) -> str:
    """The exact line sent to the remote shell, sudo wrapper included.

    ``sudo -n`` never prompts (a prompt would hang a non-interactive run),
    ``-H`` gives the command the target user's HOME, and ``--`` keeps an
    argv that starts with ``-`` from being read as sudo options.
    """
    if not (command.sudo or command.user):
        return command.line()
    wrapper = ["sudo", "-n"]
    if command.user:
        wrapper += ["-u", command.user]
    wrapper += ["-H", "--"]
    return shlex.join([*wrapper, *command.argv])


# The destination's directory holds the temp file so the final mv is a
# rename(2) on one filesystem: readers see the old file or the new one,
# never a partial write.  umask 077 makes the temp file private from its
# first byte, so a secret is never world-readable, not even before chmod.
_PUT_SCRIPT = """\
set -eu
dest=$1 mode=$2 owner=$3 group=$4
umask 077
tmp=$(mktemp "$(dirname -- "$dest")/.smship-put.XXXXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
if [ -n "$owner" ]; then chown -- "$owner" "$tmp"; fi
if [ -n "$group" ]; then chgrp -- "$group" "$tmp"; fi
chmod -- "$mode" "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
"""


def put_command(data: bytes, remote_path: str, *, mode: int = 0o644,
                owner: str | None = None, group: str | None = None,
                sudo: bool = True) -> Command:
    """The one-round-trip command that atomically writes ``data``.

    The bytes travel on stdin; the path, mode and owner reach the script as
    positional arguments, so none of them can become shell syntax.
    """
    if not remote_path:
        raise ValueError("put needs a remote path")
    return script(
        _PUT_SCRIPT,
        sudo=sudo,
        stdin=data,
        args=(remote_path, format(mode, "o"), owner or "", group or ""),
        description=f"put {remote_path} ({len(data)} bytes, "
                    f"mode {mode:04o})",
    )


def _ssh_option_args(options: SSHOptions) -> list[str]:
    strict = "accept-new" if options.accept_unknown_hosts else "yes"
    known = str(options.known_hosts) if options.known_hosts else "/dev/null"
    return [
        "-F", str(options.ssh_config) if options.ssh_config else "none",
        "-o", "BatchMode=yes",
        "-o", f"StrictHostKeyChecking={strict}",
        "-o", f"UserKnownHostsFile={known}",
        "-o", f"ConnectTimeout={max(1, round(options.connect_timeout))}",
    ]


def _endpoint_args(endpoint: Endpoint) -> list[str]:
    args = ["-p", str(endpoint.port), "-l", endpoint.user]
    if endpoint.identity is not None:
        args += ["-i", str(endpoint.identity)]
    return args


def _escape_percent(text: str) -> str:
    # ssh expands %-tokens in ProxyCommand; %% is a literal percent sign.
    return text.replace("%", "%%")


def _proxy_command(jumps: tuple[Endpoint, ...],
                   options: SSHOptions) -> str | None:
    """A ProxyCommand that reaches ``%h:%p`` through ``jumps`` in order.

    We do not use ``-J``: OpenSSH starts the jump with only ``-F`` passed
    on, so our known_hosts file, strictness and key would not apply to it.
    """
    if not jumps:
        return None
    *before, last = jumps
    argv = ["ssh", *_ssh_option_args(options), *_endpoint_args(last)]
    inner = _proxy_command(tuple(before), options)
    if inner is not None:
        # The hop's own ssh expands this inner command once more, which the
        # escaping below accounts for: each level adds one escape.
        argv += ["-o", f"ProxyCommand={inner}"]
    words = [shlex.quote(_escape_percent(arg)) for arg in argv]
    # The only tokens ssh should expand: the host and port to forward to.
    words += ["-W", "'[%h]:%p'", shlex.quote(_escape_percent(last.host))]
    return " ".join(words)


def ssh_argv(endpoint: Endpoint, options: SSHOptions) -> list[str]:
    """The ``ssh`` argv (without a host) matching what paramiko does."""
    argv = ["ssh", *_ssh_option_args(options), *_endpoint_args(endpoint)]
    proxy = _proxy_command(endpoint.jumps, options)
    if proxy is not None:
        argv += ["-o", f"ProxyCommand={proxy}"]
    return argv


# sshd sends no hangup to a session without a terminal, so a command that
# never ends by itself (journalctl -f) would outlive the connection.  A
# watcher reads the session's stdin, which Fleet.stream keeps open and never
# writes, and stops the command when it ends: when the connection does.
_UNTIL_DISCONNECTED = """\
exec 3<&0
"$@" &
pid=$!
(cat <&3 >/dev/null 2>&1; kill "$pid" 2>/dev/null) >/dev/null 2>&1 &
wait "$pid"
"""


def until_disconnected(argv: Iterable[str], *, sudo: bool = False,
                       description: str = "") -> Command:
    """``argv`` for :meth:`Fleet.stream`, stopped when the connection ends."""
    argv = tuple(argv)
    return script(_UNTIL_DISCONNECTED, sudo=sudo, args=argv,
                  description=description or " ".join(argv))


def stream_argv(endpoint: Endpoint, options: SSHOptions,
                command: Command) -> list[str]:
    """The ``ssh`` argv running ``command`` with its output streamed back.

    No tty (``-T``): output arrives byte for byte, stderr kept apart.
    Keepalives notice a host that vanished while a stream is idle.
    """
    return [*ssh_argv(endpoint, options), "-T",
            "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3",
            endpoint.host, remote_line(command)]


def rsync_argv(endpoint: Endpoint, options: SSHOptions, local_dir: str | Path,
               remote_dir: str, *, link_dest: str | None = None,
               delete: bool = True, excludes: Iterable[str] = (),
               sudo: bool = False, checksum: bool = False,
               chown: str | None = None) -> list[str]:
    """The local ``rsync`` argv copying the contents of ``local_dir``.

    ``--secluded-args`` sends paths inside the rsync protocol instead of on
    the remote command line, so an odd remote path is never shell syntax.
    ``--no-human-readable`` keeps ``--stats`` numbers free of separators.
    """
    argv = ["rsync", "-rlpt", "--stats", "--no-human-readable",
            "--secluded-args",
            "-e", shlex.join(ssh_argv(endpoint, options))]
    if delete:
        argv.append("--delete")
    if checksum:
        argv.append("--checksum")
    if sudo:
        argv.append("--rsync-path=sudo -n rsync")
    if chown:
        argv.append(f"--chown={chown}")
    if link_dest:
        # rsync resolves a relative link-dest against the destination, a
        # surprise nobody wants: require the caller to be explicit.
        if not link_dest.startswith("/"):
            raise ValueError("link_dest must be an absolute remote path")
        argv.append(f"--link-dest={link_dest}")
    argv += [f"--exclude={pattern}" for pattern in excludes]
    source = str(local_dir).rstrip("/") + "/"
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    argv += [source, f"{endpoint.user}@{host}:{remote_dir.rstrip('/')}/"]
    return argv


_STATS = {
    "bytes_sent": re.compile(r"^Total bytes sent:\s*([\d,.]+)", re.M),
    "bytes_received": re.compile(r"^Total bytes received:\s*([\d,.]+)", re.M),
    "files_transferred": re.compile(
        r"^Number of regular files transferred:\s*([\d,.]+)", re.M),
}


def parse_rsync_stats(output: str) -> dict[str, int]:
    """Pull byte and file counts out of ``rsync --stats`` output."""
    stats = {}
    for key, pattern in _STATS.items():
        match = pattern.search(output)
        digits = re.sub(r"\D", "", match.group(1)) if match else ""
        stats[key] = int(digits) if digits else 0
    return stats


# ---------------------------------------------------------------------------
# Host keys
# ---------------------------------------------------------------------------

_known_hosts_lock = threading.Lock()


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        self.hostname = hostname
        self.key = key
        super().__init__(f"unknown host key for {hostname}")


class _StrictPolicy(paramiko.RejectPolicy):
    """RejectPolicy that keeps the key, so the error can show it."""

    def missing_host_key(self, client, hostname, key):
        raise _UnknownHostKey(hostname, key)


class _AcceptNewPolicy(paramiko.AutoAddPolicy):
    """Trust a never-seen host and append it to known_hosts (accept-new).

    Appending, rather than paramiko's rewrite of the whole file, keeps the
    operator's other entries (hashed or commented) exactly as they were;
    the lock keeps parallel first connections from interleaving lines.
    """

    def __init__(self, known_hosts: Path | None) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client, hostname, key):
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.known_hosts is None:
            return
        line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
        with _known_hosts_lock:
            self.known_hosts.parent.mkdir(mode=0o700, parents=True,
                                          exist_ok=True)
            fd = os.open(self.known_hosts,
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write(line)


def _fingerprint(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.fingerprint}"


def _describe_failure(exc: BaseException, endpoint: Endpoint,
                      options: SSHOptions) -> str:
    """Turn a connect-time exception into the cause part of a one-liner."""
    known = options.known_hosts or "(no known_hosts file)"
    if isinstance(exc, _UnknownHostKey):
        return (f"unknown host key {_fingerprint(exc.key)} for "
                f"{exc.hostname}, not in {known}; verify it and add it "
                f"(ssh-keyscan), or opt in to trusting new hosts")
    if isinstance(exc, paramiko.BadHostKeyException):
        name = (endpoint.host if endpoint.port == 22
                else f"[{endpoint.host}]:{endpoint.port}")
        return (f"host key CHANGED for {name}: {known} has "
                f"{_fingerprint(exc.expected_key)}, host offers "
                f"{_fingerprint(exc.key)}; possible man-in-the-middle, "
                f"refusing (if the host was rebuilt, remove the old entry "
                f"with ssh-keygen -R '{name}')")
    if isinstance(exc, paramiko.AuthenticationException):
        key = f" with key {endpoint.identity}" if endpoint.identity else ""
        return f"authentication failed for user {endpoint.user}{key}"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        errors = list(exc.errors.values())
        if errors and all(isinstance(e, ConnectionRefusedError)
                          for e in errors):
            return "connection refused"
        return "; ".join(sorted({_os_error_text(e) for e in errors})) or str(
            exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"connection timed out after {options.connect_timeout:g}s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve host name {endpoint.host!r}"
    if isinstance(exc, paramiko.ChannelException):
        via = ",".join(str(jump) for jump in endpoint.jumps) or "?"
        return f"jump host could not open a channel: {exc.text} (via {via})"
    if isinstance(exc, OSError):
        return _os_error_text(exc)
    if isinstance(exc, EOFError):
        return "connection closed by the host during the handshake"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _os_error_text(exc: OSError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


# ---------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------


class _StdinStream:
    """Feeds bytes to invoke's stdin pump in large chunks.

    Invoke asks non-terminal streams for one byte at a time, which would
    turn a file into one SSH packet per byte; returning a whole chunk per
    read is allowed by its loop and keeps uploads fast.  An empty stream
    still matters: invoke closes the remote stdin at EOF, so a command that
    reads stdin never hangs.
    """

    CHUNK = 64 * 1024

    def __init__(self, data: bytes | None) -> None:
        self._data = memoryview(data or b"")
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        chunk = bytes(self._data[self._pos:self._pos + self.CHUNK])
        self._pos += len(chunk)
        return chunk

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise io.UnsupportedOperation("not a real file")


# latin-1 maps every byte to one character and back, so binary stdin
# survives invoke's decode/encode unchanged and output chunks split in the
# middle of a UTF-8 sequence are not mangled; we decode as UTF-8 at the end.
_WIRE_ENCODING = "latin-1"


def _text(wire: str) -> str:
    return wire.encode(_WIRE_ENCODING).decode("utf-8", "replace")


_SUDO_REFUSALS = ("a password is required", "a terminal is required",
                  "no askpass program")


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
    operation on that host; :meth:`close` (or leaving the ``with`` block)
    closes them all.  ``round_trips`` counts remote exchanges per host:
    each exec channel, upload and rsync process is one.
    """

    def __init__(self, targets: Iterable[Target] = (),
                 options: SSHOptions | None = None) -> None:
        self.options = options or SSHOptions()
        self.targets: dict[str, Target] = {}
        self.round_trips: dict[str, int] = {}
        self._ssh_config = _load_ssh_config(self.options.ssh_config)
        self._endpoints: dict[str, Endpoint] = {}
        self._connections: dict[str, Connection] = {}
        self._jump_connections: dict[Endpoint, Connection] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._jump_lock = threading.Lock()
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
        if self.options.known_hosts and self.options.known_hosts.is_file():
            # paramiko looks non-22 ports up as "[host]:port", like ssh.
            client.load_host_keys(str(self.options.known_hosts))
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
            except Exception as exc:  # every failure becomes one line
                hop = endpoint.jumps[-1]
                cause = _describe_failure(exc, hop, self.options)
                raise ConnectError(
                    name, endpoint, f"jump host {hop}: {cause}") from exc
        return gateway

    def connection(self, target: Target | str) -> Connection:
        """The open connection to ``target``; raises :class:`ConnectError`."""
        target = self._target(target)
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
            except Exception as exc:  # every failure becomes one line
                cause = _describe_failure(exc, endpoint, self.options)
                raise ConnectError(target.name, endpoint, cause) from exc
            self._connections[target.name] = connection
            return connection

    def close(self) -> None:
        """Close every connection, jump hosts last."""
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

    def _exec(self, connection: Connection, name: str, command: Command,
              timeout: float | None, started: float) -> Result:
        described = str(command)
        try:
            outcome = connection.run(
                remote_line(command), hide=True, warn=True, pty=False,
                in_stream=_StdinStream(command.stdin),
                encoding=_WIRE_ENCODING, timeout=timeout)
        except CommandTimedOut as exc:
            return Result(
                name, described, NO_EXIT,
                stdout=_text(exc.result.stdout),
                stderr=_text(exc.result.stderr),
                duration=time.monotonic() - started,
                error=f"{name}: {described}: timed out after {timeout:g}s")
        except Exception as exc:  # a dropped connection mid-command
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return Result(name, described, NO_EXIT,
                          duration=time.monotonic() - started,
                          error=f"{name}: {described}: connection lost: "
                                f"{first}")
        result = Result(name, described, outcome.exited,
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

    def put(self, target: Target | str, data: bytes, remote_path: str, *,
            mode: int = 0o644, owner: str | None = None,
            group: str | None = None, sudo: bool = True) -> Result:
        """Atomically replace ``remote_path`` with ``data`` (one round trip).

        Raises :class:`SSHError` on any failure: a half-done upload must
        never look like success to the caller.
        """
        command = put_command(data, remote_path, mode=mode, owner=owner,
                              group=group, sudo=sudo)
        return self.run(target, command, check=True)

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
                          chown=chown)
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
            ) -> "FleetResult[T]":
        """Call ``fn(target)`` for every target, at most ``parallel`` at once.

        A host whose call raises lands in ``failed`` with its exception; the
        other hosts carry on.  Results keep the order targets were given in.
        """
        chosen = [self._target(t) for t in
                  (self.targets.values() if targets is None else targets)]
        if not chosen:
            return FleetResult({})
        outcomes: dict[str, T | Exception] = {}
        workers = min(self.options.parallel, len(chosen))
        with ThreadPoolExecutor(max_workers=workers,
                                thread_name_prefix="smship-ssh") as pool:
            futures = [(t.name, pool.submit(fn, t)) for t in chosen]
            for name, future in futures:
                try:
                    outcomes[name] = future.result()
                except Exception as exc:  # collected, reported per host
                    outcomes[name] = exc
        return FleetResult(outcomes)

    def run_all(self, command: Command | str,
                targets: Iterable[Target | str] | None = None, *,
                timeout: float | None = None) -> dict[str, Result]:
        """Run ``command`` on every target in parallel; never raises."""
        outcomes = self.map(
            lambda t: self.run(t, command, timeout=timeout), targets)
        # An unexpected bug in one host's run must not hide the others.
        return {name: outcomes.succeeded[name] if name in outcomes.succeeded
                else Result(name, str(command), NO_EXIT, error=f"{name}: {outcomes.failed[name]}")
                for name in outcomes}


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


def _ssh_reason(stderr: str) -> str | None:
    """ssh's own complaint in rsync's stderr, if ssh is what failed.

    rsync prefixes its messages with "rsync"; what remains came from ssh
    (or from a remote sudo, which we report separately).
    """
    lines = [line.strip() for line in stderr.splitlines()
             if line.strip() and not line.startswith(("rsync", "sudo:", "@"))]
    if not lines:
        return None
    key_lines = [line for line in lines if "has changed" in line
                 or "verification failed" in line]
    if key_lines:
        return " ".join(key_lines)
    for line in lines:
        if line.startswith(("ssh:", "Permission denied", "channel")):
            return line
    return lines[-1]


def _rsync_error(name: str, endpoint: Endpoint,
                 result: RsyncResult) -> str | None:
    if result.exit_code == 0:
        return None
    last = _last_line(result.stderr) or f"exit {result.exit_code}"
    sudo_lines = [line.strip() for line in result.stderr.splitlines()
                  if line.startswith("sudo:")]
    if sudo_lines:
        return (f"{name}: {result.command}: sudo for the remote rsync "
                f"refused ({sudo_lines[0]}); grant {endpoint.user} "
                f"passwordless sudo (NOPASSWD)")
    # rsync reports ssh's death as 255, or as 12 when it notices the broken
    # stream first; either way, name the host and address like ConnectError.
    reason = _ssh_reason(result.stderr)
    if result.exit_code == 255 or (result.exit_code == 12 and reason
                                   and result.bytes_received == 0):
        return (f"{name} ({_host_port(endpoint.host, endpoint.port)}): "
                f"rsync's ssh failed: {reason or last}")
    # rsync's last line is a generic "error in file IO (code 11)"; the line
    # that says what went wrong ("write failed on ...: No space left on
    # device (28)") comes before it.
    cause = next((line.strip() for line in result.stderr.splitlines() if line.startswith("rsync: ")), last)
    return f"{name}: {result.command}: rsync exit {result.exit_code}: {cause}"


def iter_results(outcomes: Mapping[str, object]) -> Iterator[str]:
    """One summary line per host from :meth:`Fleet.map` or ``run_all``."""
    for name, value in outcomes.items():
        if isinstance(value, Result):
            yield value.summary()
        elif isinstance(value, BaseException):
            # Foreign exceptions may span lines; a summary must not.
            text = " ".join(str(value).split())
            yield text if isinstance(value, SSHError) else (
                f"{name}: {type(value).__name__}: {text}")
        else:
            yield f"{name}: ok"
