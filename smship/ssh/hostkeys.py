"""Host keys: strict unless the operator trusts new hosts; a changed key is always refused."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import paramiko

from smship.errors import SmshipError
from smship.ssh.values import Endpoint, SSHOptions


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


def read_known_hosts(path: Path | None) -> list[paramiko.hostkeys.HostKeyEntry]:
    """The host keys of a known_hosts file, read once for every connection.

    ``@cert-authority`` lines are skipped: paramiko cannot check host
    certificates, and leaving out a line only trusts less (a host known only
    through its CA is then reported as unknown).  ``@revoked`` lines are
    refused, once, naming the line: smship cannot honour them, and ignoring a
    revocation would trust a key its owner withdrew.  Lines of key types
    paramiko does not know are skipped, as OpenSSH skips them.
    """
    if path is None or not path.exists():
        return []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SmshipError(f"{path}: the known_hosts file is not UTF-8 text") from None
    except OSError as exc:
        raise SmshipError(f"{path}: cannot read the known_hosts file: {exc.strerror}") from None
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.startswith("@revoked"):
            raise SmshipError(f"{path}:{number}: @revoked lines are not supported: remove the line together "
                              "with the revoked key's own lines")
        if not line or line.startswith(("#", "@")):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except (paramiko.hostkeys.InvalidHostKey, paramiko.SSHException, ValueError):
            continue
        if entry is not None:
            entries.append(entry)
    return entries
