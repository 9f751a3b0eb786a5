"""A real OpenSSH server on 127.0.0.1 for the SSH layer's tests.

The server listens only on loopback, on a free high port, with keys made
for this test session; it runs as a subprocess and is stopped at the end.
Logins go to two local users: ``smship-test`` (passwordless sudo) and
``smship-nosudo`` (no sudo rule, no TCP forwarding), so both the happy path
and the refusals are exercised against real sudo and sshd.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from smship.ssh import Fleet, SSHOptions, Target

SSHD = "/usr/sbin/sshd"
SUDO_USER = "smship-test"
PLAIN_USER = "smship-nosudo"
SUDOERS = Path("/etc/sudoers.d/smship-test")
LOOPBACK = "127.0.0.1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sshd: needs root and a real sshd started on 127.0.0.1")


@dataclass(frozen=True)
class SSHServer:
    port: int
    host_key_pub: str
    client_key: Path
    other_host_key_pub: str
    known_hosts: Path
    log: Path
    workdir: Path
    address: str = LOOPBACK
    sudo_user: str = SUDO_USER
    plain_user: str = PLAIN_USER

    def known_hosts_line(self, public_key: str | None = None) -> str:
        return f"[{LOOPBACK}]:{self.port} {public_key or self.host_key_pub}\n"


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    "smship-test", "-f", str(path)], check=True,
                   timeout=30)
    return path.with_suffix(".pub").read_text().strip()


def _ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh",
                        name], check=True, timeout=30)
    # A fresh account is locked ("!"), and sshd without PAM refuses locked
    # accounts even for key logins; "*" means "no password" instead.
    subprocess.run(["usermod", "-p", "*", name], check=True, timeout=30)


def _install_sudoers() -> bool:
    """Install the NOPASSWD rule; True when this session created it."""
    if SUDOERS.exists():
        return False
    with tempfile.NamedTemporaryFile("w", dir="/etc/sudoers.d",
                                     prefix=".smship-", delete=False) as tmp:
        tmp.write(f"{SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    os.chmod(tmp.name, 0o440)
    try:
        subprocess.run(["visudo", "-c", "-q", "-f", tmp.name], check=True,
                       timeout=30)
        os.rename(tmp.name, SUDOERS)
    finally:
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)
    return True


def _wait_for_banner(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited early:\n{log.read_text()}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on port {port}:\n"
                       f"{log.read_text()}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    if os.geteuid() != 0:
        pytest.skip("the sshd tests need root (sshd, useradd, sudoers)")
    for tool in (SSHD, "ssh", "ssh-keygen", "rsync", "sudo", "visudo"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    work = tmp_path_factory.mktemp("sshd")
    # sshd drops privileges into /run/sshd and refuses to start without it.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    host_pub = _keygen(work / "host_key")
    other_pub = _keygen(work / "other_host_key")
    _keygen(work / "client_key")
    # sshd reads AuthorizedKeysFile as the logging-in user, and pytest's
    # tmp dirs are private to root: keep the file in a world-searchable dir.
    auth_dir = Path(tempfile.mkdtemp(prefix="smship-sshd-", dir="/tmp"))
    auth_dir.chmod(0o755)
    authorized = auth_dir / "authorized_keys"
    authorized.write_text((work / "client_key.pub").read_text())
    authorized.chmod(0o644)
    _ensure_user(SUDO_USER)
    _ensure_user(PLAIN_USER)
    created_sudoers = _install_sudoers()

    port = free_port()
    config = work / "sshd_config"
    config.write_text(f"""\
ListenAddress {LOOPBACK}
Port {port}
HostKey {work / 'host_key'}
PidFile {work / 'sshd.pid'}
AuthorizedKeysFile {authorized}
AllowUsers {SUDO_USER} {PLAIN_USER}
UsePAM no
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
AllowTcpForwarding yes
MaxSessions 50
MaxStartups 50:30:100
LogLevel VERBOSE
Subsystem sftp internal-sftp
Match User {PLAIN_USER}
    AllowTcpForwarding no
""")
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True, timeout=30)
    known_hosts = work / "known_hosts"
    log = work / "sshd.log"
    server = SSHServer(port=port, host_key_pub=host_pub,
                       client_key=work / "client_key",
                       other_host_key_pub=other_pub, known_hosts=known_hosts,
                       log=log, workdir=work)
    known_hosts.write_text(server.known_hosts_line())
    with open(log, "wb") as log_handle:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                stdout=log_handle, stderr=log_handle,
                                stdin=subprocess.DEVNULL)
    try:
        _wait_for_banner(port, proc, log)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(auth_dir, ignore_errors=True)
        if created_sudoers:
            SUDOERS.unlink(missing_ok=True)


@pytest.fixture
def closed_port() -> int:
    """A loopback port with no listener: connecting is refused at once."""
    return free_port()


@pytest.fixture
def options(sshd: SSHServer) -> SSHOptions:
    return SSHOptions(known_hosts=sshd.known_hosts, ssh_config=None,
                      connect_timeout=5)


@pytest.fixture
def target(sshd: SSHServer) -> Target:
    return Target("web1", LOOPBACK, sshd.port, user=SUDO_USER,
                  identity=sshd.client_key)


@pytest.fixture
def fleet(options: SSHOptions, target: Target) -> Iterator[Fleet]:
    with Fleet([target], options) as fleet:
        yield fleet


@pytest.fixture
def remote_dir() -> Iterator[Path]:
    """A scratch directory the sudo-capable test user owns."""
    path = Path(tempfile.mkdtemp(prefix="smship-ssh-", dir="/tmp"))
    user = pwd.getpwnam(SUDO_USER)
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
