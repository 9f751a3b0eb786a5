"""One lab host: an overlay over the unpacked image, booted with systemd-nspawn.

Faults are what happens to real machines: ``stop`` is a clean poweroff (SIGTERM to
nspawn), ``kill`` is a power loss (SIGKILL to the host's PID 1), ``partition`` cuts
the host's cable (its veth end on the bridge goes down) and ``heal`` plugs it back.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from smship.lab.system import LabError, run

CGROUP_HIERARCHIES = ("systemd", "unified")
CGROUP_FS = Path("/sys/fs/cgroup")
DEPLOY_USER = "deploy"


@dataclass
class HostSpec:
    """Where one host lives; saved in the lab's state file."""

    name: str
    address: str
    prefixlen: int
    gateway: str
    bridge: str
    lower: str          # unpacked image (read-only layer)
    upper: str          # this host's changes
    work: str           # overlayfs work dir
    root: str           # merged root the host boots from
    run_dir: str        # pidfile and exit code
    log: str            # console log
    cgroup_name: str    # path below each cgroup hierarchy
    machine: str        # nspawn machine name: unique on this machine (see machine_name)

    @property
    def pidfile(self) -> Path:
        return Path(self.run_dir, "nspawn.pid")

    @property
    def veth(self) -> str:
        # nspawn names the machine side of the veth "vb-" plus the machine name.
        return "vb-" + self.machine

    def cgroups(self) -> list[Path]:
        return [CGROUP_FS / h / self.cgroup_name for h in CGROUP_HIERARCHIES]

    def to_dict(self) -> dict:
        return asdict(self)


def machine_name(name: str, bridge: str) -> str:
    """nspawn machine name of host ``name`` in the lab on ``bridge``.

    nspawn derives the veth name ("vb-" + machine name, at most 15 characters) and
    runtime paths from it, so two labs' lab1 must differ: a short tag of the bridge
    (one bridge per lab) is appended.
    """
    tag = hashlib.sha256(bridge.encode()).hexdigest()[:4]
    machine = f"{name}.{tag}"
    if len(machine) > 12:
        raise LabError(f"host name {name!r} is too long for the lab (at most 7 characters)")
    return machine


# ---------------------------------------------------------------- create and destroy

def create(spec: HostSpec, authorized_key: str, all_hosts: dict[str, str]) -> str:
    """Mount the host's overlay and give it its own identity.

    Returns the host's new ed25519 public key line ("ssh-ed25519 AAAA...").
    """
    for path in (spec.upper, spec.work, spec.root, spec.run_dir):
        Path(path).mkdir(parents=True, exist_ok=True)
    for path in (spec.lower, spec.upper, spec.work):
        if any(c in path for c in ",:\\"):
            raise LabError(f"lab path {path!r} cannot hold ',', ':' or '\\' (overlayfs)")
    run(["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={spec.lower},upperdir={spec.upper},workdir={spec.work}", spec.root])
    root = Path(spec.root)
    _write(root / "etc/hostname", spec.name + "\n")
    _write(root / "etc/machine-id", uuid.uuid4().hex + "\n", mode=0o444)
    hosts = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{spec.name}",
             "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts += [f"{addr}\t{name}" for name, addr in all_hosts.items() if name != spec.name]
    _write(root / "etc/hosts", "\n".join(hosts) + "\n")
    _write(root / "etc/systemd/network/10-host0.network",
           "[Match]\nName=host0\n\n[Network]\n"
           f"Address={spec.address}/{spec.prefixlen}\nGateway={spec.gateway}\n"
           "LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
    key = root / "etc/ssh/ssh_host_ed25519_key"
    for old in (key, key.with_name(key.name + ".pub")):
        old.unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{spec.name}",
         "-f", str(key)])
    # The same key logs in as root too, for an inventory that says so (as a host without a sudo user is
    # reached); Debian's sshd lets root in by key.
    for user, home in ((DEPLOY_USER, root / "home" / DEPLOY_USER), ("root", root / "root")):
        uid, gid = _user_ids(root, user)
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chown(ssh_dir, uid, gid)
        auth = ssh_dir / "authorized_keys"
        _write(auth, authorized_key.strip() + "\n", mode=0o600)
        os.chown(auth, uid, gid)
        # Each SSH user lingers: logind then never stops its user slice, which it does ten seconds after
        # the user's last session ends, and a command's new session caught in that stop is killed with it
        # (seen as an agent call ending by a signal, exit -1, right after the previous command).
        _write(root / "var/lib/systemd/linger" / user, "")
    pub = key.with_name(key.name + ".pub").read_text().split()
    return f"{pub[0]} {pub[1]}"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    tmp = path.with_name(f".{path.name}.smship")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _user_ids(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise LabError(f"the lab image has no {user} user; rebuild it")


# ---------------------------------------------------------------- processes

def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def _alive(pid: int) -> bool:
    st = _proc_state(pid)
    return st is not None and st[0] not in ("Z", "X")


def _is_nspawn(pid: int) -> bool:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(cmd) and cmd[0].endswith(b"systemd-nspawn")


def nspawn_pid(spec: HostSpec) -> int | None:
    """PID of the host's running nspawn, or None."""
    try:
        pid = int(spec.pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) and _is_nspawn(pid) else None


def is_running(spec: HostSpec) -> bool:
    return nspawn_pid(spec) is not None


def init_pid(spec: HostSpec) -> int | None:
    """PID (on the machine) of the host's PID 1: nspawn's child in a new PID namespace."""
    parent = nspawn_pid(spec)
    if parent is None:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _proc_state(int(entry))
        if st is None or st[1] != parent or st[0] in ("Z", "X"):
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                return int(entry)
    return None


def cgroup_pids(cgroup_name: str) -> set[int]:
    """Every process in a cgroup subtree (named systemd hierarchy)."""
    pids: set[int] = set()
    for hierarchy in CGROUP_HIERARCHIES:
        base = CGROUP_FS / hierarchy / cgroup_name
        if not base.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(base):
            if "cgroup.procs" in files:
                try:
                    text = Path(dirpath, "cgroup.procs").read_text()
                except OSError:
                    continue
                pids.update(int(p) for p in text.split())
    return pids


def cpu_seconds(cgroup_name: str) -> float | None:
    """The CPU time (user and system) a host's processes have used since it booted, from its cgroup in
    the unified hierarchy (where the kernel keeps it for the whole subtree, exited processes included);
    None where that cgroup has no such count."""
    try:
        text = (CGROUP_FS / "unified" / cgroup_name / "cpu.stat").read_text()
    except OSError:
        return None
    usage = next((line.split()[1] for line in text.splitlines() if line.startswith("usage_usec ")), None)
    return int(usage) / 1e6 if usage is not None else None


def kill_leftovers(spec: HostSpec, timeout: float = 5) -> None:
    """SIGKILL every process still in the host's cgroups (after a crash or a hang)."""
    kill_cgroup(spec.cgroup_name, timeout)


def kill_cgroup(cgroup_name: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = {p for p in cgroup_pids(cgroup_name) if _alive(p)}
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise LabError(f"processes {sorted(pids)} in cgroup {cgroup_name} "
                           "do not die")
        time.sleep(0.1)


def remove_cgroups(cgroup_name: str) -> None:
    """Remove a cgroup subtree in every hierarchy, deepest first (all must be empty)."""
    for hierarchy in CGROUP_HIERARCHIES:
        base = CGROUP_FS / hierarchy / cgroup_name
        if not base.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda w: -len(w[0])):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass


# ---------------------------------------------------------------- boot and faults

def nspawn_argv(spec: HostSpec) -> list[str]:
    return ["systemd-nspawn", "--quiet", "--boot", f"--directory={spec.root}",
            f"--machine={spec.machine}", f"--hostname={spec.name}",
            f"--network-bridge={spec.bridge}",
            "--register=no", "--keep-unit", "--console=read-only",
            "--resolv-conf=copy-host", "--timezone=off", "--link-journal=no"]


def boot(spec: HostSpec) -> int:
    """Start the host's nspawn in its own cgroups, detached. Returns nspawn's PID."""
    if is_running(spec):
        return nspawn_pid(spec)  # type: ignore[return-value]
    # Anything left from a previous run of this host (killed, crashed) goes first.
    kill_leftovers(spec)
    remove_cgroups(spec.cgroup_name)
    cgroups = spec.cgroups()
    for cg in cgroups:
        cg.mkdir(parents=True, exist_ok=True)
    Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
    Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
    spec.pidfile.unlink(missing_ok=True)
    remove_veth(spec)
    argv = [sys.executable, "-m", "smship.lab.supervise", "--pidfile", str(spec.pidfile),
            "--log", spec.log]
    for cg in cgroups:
        argv += ["--cgroup", str(cg)]
    argv += ["--", *nspawn_argv(spec)]
    env = dict(os.environ)
    pkg_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=30, env=env)
    if proc.returncode != 0:
        raise LabError(f"host {spec.name} did not start: "
                       f"{proc.stderr.decode(errors='replace').strip()}; see {spec.log}")
    pid = nspawn_pid(spec)
    if pid is None:
        raise LabError(f"host {spec.name} exited right after starting: {exit_report(spec)}")
    return pid


def remove_veth(spec: HostSpec, timeout: float = 5) -> None:
    """Make sure the host's veth from a previous boot is gone (the kernel removes it
    asynchronously after the host dies; nspawn fails with "File exists" otherwise)."""
    deadline = time.monotonic() + timeout
    while Path("/sys/class/net", spec.veth).exists():
        if time.monotonic() > deadline:
            run(["ip", "link", "delete", spec.veth], check=False)
            return
        time.sleep(0.05)


def exit_report(spec: HostSpec, lines: int = 5) -> str:
    """Why a host is not running: nspawn's exit code and the end of its console log."""
    exitfile = spec.pidfile.with_suffix(".exit")
    code = exitfile.read_text().strip() if exitfile.is_file() else "unknown"
    try:
        tail = Path(spec.log).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        tail = []
    return f"nspawn exit code {code}; {spec.log} ends with: " + " | ".join(tail)


def wait_stopped(spec: HostSpec, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(spec):
            return True
        time.sleep(0.1)
    return not is_running(spec)


def stop(spec: HostSpec, timeout: float = 30) -> None:
    """Clean poweroff: nspawn asks the host's systemd to shut down. Power loss if slow."""
    pid = nspawn_pid(spec)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    if wait_stopped(spec, timeout):
        return
    kill(spec)


def kill(spec: HostSpec, timeout: float = 10) -> None:
    """Power loss: SIGKILL the host's PID 1; the whole host dies at once."""
    init = init_pid(spec)
    if init is not None:
        try:
            os.kill(init, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if not wait_stopped(spec, timeout):
        pid = nspawn_pid(spec)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        kill_leftovers(spec)
        if not wait_stopped(spec, timeout):
            raise LabError(f"host {spec.name} does not die")


def partition(spec: HostSpec) -> None:
    """Cut the host off the bridge (its processes keep running)."""
    _require_veth(spec)
    run(["ip", "link", "set", "dev", spec.veth, "down"])


def heal(spec: HostSpec) -> None:
    """Plug the host back into the bridge."""
    _require_veth(spec)
    run(["ip", "link", "set", "dev", spec.veth, "up"])


def is_partitioned(spec: HostSpec) -> bool:
    try:
        flags = int(Path("/sys/class/net", spec.veth, "flags").read_text(), 16)
    except (FileNotFoundError, ValueError):
        return False
    return not flags & 0x1  # IFF_UP


def _require_veth(spec: HostSpec) -> None:
    if not is_running(spec):
        raise LabError(f"host {spec.name} is not running")
    if not Path("/sys/class/net", spec.veth).exists():
        raise LabError(f"host {spec.name} has no network link {spec.veth}")


# ---------------------------------------------------------------- mounts

def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    base = os.path.realpath(path) if path.exists() else str(path)
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == base or point.startswith(base.rstrip("/") + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def unmount_tree(path: Path) -> None:
    for point in mounts_under(path):
        proc = run(["umount", point], check=False)
        if proc.returncode != 0:
            run(["umount", "--lazy", point], check=False)


def ssh_port_open(address: str, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(4).startswith(b"SSH-")
    except OSError:
        return False
