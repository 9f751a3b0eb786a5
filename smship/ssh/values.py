"""The SSH layer's values: where a host is, how to reach it, what a command did, what went wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


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
    # The connection went down under the command (its session's sshd process gone with it).
    connection_lost: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None

    @property
    def lost(self) -> bool:
        """The remote process ended without an exit status: killed by a signal, or torn down with its
        session, or with its whole connection (logind stopping the user's slice as a new session begins
        can do either: the connection's sshd process runs in that slice too)."""
        return self.exit_code == -1 and (self.error is None or self.connection_lost)

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


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
