"""Pure builders: a target resolved through the SSH config, remote command lines, ssh/rsync argv.

Plain functions, so they can be tested without any host; the real ``ssh`` and
``rsync`` binaries get the same options as the Fabric connections.
"""

from __future__ import annotations

import getpass
import shlex
from pathlib import Path
from typing import Iterable

import paramiko

from smship.errors import SmshipError
from smship.command import Command, script
from smship.ssh.values import Endpoint, SSHOptions, Target


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
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except UnicodeDecodeError:
        raise SmshipError(f"{path}: the SSH config is not UTF-8 text") from None
    except OSError as exc:
        raise SmshipError(f"{path}: cannot read the SSH config: {exc.strerror}") from None


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


def remote_line(command: Command, login: str | None = None) -> str:
    """The exact line sent to the remote shell (logged in as ``login``), sudo wrapper included.

    ``sudo -n`` never prompts (a prompt would hang a non-interactive run),
    ``-H`` gives the command the target user's HOME, and ``--`` keeps an
    argv that starts with ``-`` from being read as sudo options.

    A login as root needs no sudo: the command runs as it is, or through
    ``runuser`` (util-linux, on every Debian host) for another user. Such a
    host need not have sudo installed, and each command is spared sudo's
    start, its PAM checks and its journal line.
    """
    if not (command.sudo or command.user):
        return command.line()
    if login == "root":
        if command.user in (None, "root"):
            return command.line()
        return shlex.join(["runuser", "-u", command.user, "--", *command.argv])
    wrapper = ["sudo", "-n"]
    if command.user:
        wrapper += ["-u", command.user]
    wrapper += ["-H", "--"]
    return shlex.join([*wrapper, *command.argv])


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


def ssh_argv(endpoint: Endpoint, options: SSHOptions, control_path: str | None = None) -> list[str]:
    """The ``ssh`` argv (without a host) matching what paramiko does; with ``control_path``, it opens
    its session on the master connection listening there (see :func:`master_argv`), or, when none
    listens, connects on its own."""
    argv = ["ssh", *_ssh_option_args(options), *_endpoint_args(endpoint)]
    proxy = _proxy_command(endpoint.jumps, options)
    if proxy is not None:
        argv += ["-o", f"ProxyCommand={proxy}"]
    if control_path is not None:
        argv += ["-o", "ControlMaster=no", "-o", f"ControlPath={_escape_percent(control_path)}"]
    return argv


def master_argv(endpoint: Endpoint, options: SSHOptions, control_path: str, persist: int) -> list[str]:
    """The ``ssh`` that logs in to ``endpoint``, then goes to the background (``-f``) as a master
    connection listening on ``control_path`` for other ssh processes' sessions (``-N``: none of its
    own). It exits with 0 once logged in, else with ssh's 255 and reason; it ends ``persist`` seconds
    after its last session, or at :func:`master_exit_argv`."""
    return [*ssh_argv(endpoint, options), "-f", "-N", "-o", "ControlMaster=yes", "-o", f"ControlPath={_escape_percent(control_path)}",
            "-o", f"ControlPersist={persist}",
            "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=3", endpoint.host]


def master_exit_argv(endpoint: Endpoint, control_path: str) -> list[str]:
    """The ``ssh`` that asks the master listening on ``control_path`` to close its connection."""
    return ["ssh", "-F", "none", "-o", f"ControlPath={_escape_percent(control_path)}", "-O", "exit",
            endpoint.host]


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
            endpoint.host, remote_line(command, endpoint.user)]


def rsync_argv(endpoint: Endpoint, options: SSHOptions, local_dir: str | Path,
               remote_dir: str, *, link_dest: str | None = None,
               delete: bool = True, excludes: Iterable[str] = (),
               sudo: bool = False, checksum: bool = False,
               chown: str | None = None, control_path: str | None = None) -> list[str]:
    """The local ``rsync`` argv copying the contents of ``local_dir`` (its ssh on the master
    connection at ``control_path``, if one listens there).

    ``--secluded-args`` sends paths inside the rsync protocol instead of on
    the remote command line, so an odd remote path is never shell syntax.
    ``--no-human-readable`` keeps ``--stats`` numbers free of separators.
    """
    argv = ["rsync", "-rlpt", "--stats", "--no-human-readable",
            "--secluded-args",
            "-e", shlex.join(ssh_argv(endpoint, options, control_path))]
    if delete:
        argv.append("--delete")
    if checksum:
        argv.append("--checksum")
    if sudo and endpoint.user != "root":     # root's own rsync writes as root already
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
