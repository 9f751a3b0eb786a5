"""The lab against real hosts: image cache, boot, strict ssh, systemd, faults, teardown.

Network rule: these tests talk only to loopback and to lab hosts' addresses on the
bridges the labs create.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from smship.command import cmd
from smship.lab import Lab, host as hostmod, image, network
from smship.lab.lab import nspawn_processes

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]

STOPMARK_UNIT = """\
[Unit]
Description=smship lab test: leaves a mark only when stopped cleanly

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/rm -f /var/lib/smship-stopmark
ExecStop=/bin/sh -c 'echo clean > /var/lib/smship-stopmark'
"""


def out(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.decode().strip()


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.args, proc.returncode, proc.stderr.decode())
    return out(proc)


def boot_id(lab, name: str) -> str:
    return ok(lab.ssh(name, ["cat", "/proc/sys/kernel/random/boot_id"]))


def install_stopmark(lab, name: str) -> None:
    ok(lab.ssh(name, cmd("tee", "/etc/systemd/system/smship-stopmark.service", sudo=True,
                         stdin=STOPMARK_UNIT.encode())))
    ok(lab.ssh(name, cmd("systemctl", "daemon-reload", sudo=True)))
    ok(lab.ssh(name, cmd("systemctl", "start", "smship-stopmark.service", sudo=True)))
    assert ok(lab.ssh(name, ["systemctl", "is-active", "smship-stopmark.service"])) == "active"
    assert lab.ssh(name, ["test", "-e", "/var/lib/smship-stopmark"]).returncode == 1


def direct_opener() -> urllib.request.OpenerDirector:
    """urllib without any proxy from the environment: we only talk to lab addresses."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------- image and boot

def test_image_is_cached_and_reused(lab):
    recipe = image.machine_recipe(lab.image, lab.distro)
    tarball = image.cache_dir() / recipe.filename
    assert f"-{lab.distro}-" in tarball.name         # cached per Debian release
    assert tarball.is_file()
    mtime = tarball.stat().st_mtime_ns
    again = image.ensure_image(recipe)
    assert again.built is False
    assert again.tarball == tarball
    assert tarball.stat().st_mtime_ns == mtime
    assert again.seconds < 1


def test_three_hosts_boot_with_their_own_identity(lab):
    assert [h.name for h in lab.hosts] == ["lab1", "lab2", "lab3"]
    machine_ids, host_keys = set(), set()
    for h in lab.hosts:
        assert ok(lab.ssh(h.name, ["hostname"])) == h.name
        assert ok(lab.ssh(h.name, ["whoami"])) == "deploy"
        assert ok(lab.ssh(h.name, cmd("whoami", sudo=True))) == "root"
        addrs = ok(lab.ssh(h.name, ["ip", "-4", "-o", "addr", "show", "dev", "host0"]))
        assert f"{h.address}/24" in addrs
        machine_ids.add(ok(lab.ssh(h.name, ["cat", "/etc/machine-id"])))
        host_keys.add(ok(lab.ssh(h.name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]))
                      .split()[1])
        sources = ok(lab.ssh(h.name, ["cat", "/etc/apt/sources.list"]))
        assert all(line in sources for line in image.sources_for(lab.distro))
        assert f"VERSION_CODENAME={lab.distro}" in ok(lab.ssh(h.name, ["cat", "/etc/os-release"]))
    assert len(machine_ids) == 3 and len(host_keys) == 3
    known = lab.known_hosts.read_text()
    for key in host_keys:
        assert key in known


def test_lab_files(lab):
    import yaml
    inv = yaml.safe_load(lab.inventory.read_text())
    env = inv["environments"]["lab"]
    assert [(h["name"], h["address"]) for h in env["hosts"]] == \
        [(h.name, h.address) for h in lab.hosts]
    assert env["ssh"]["known_hosts"] == str(lab.known_hosts)
    assert env["ssh"]["accept_unknown_hosts"] is False
    assert (lab.secrets.stat().st_mode & 0o777) == 0o600
    text = lab.secrets.read_text()
    assert "SM_SECRET_KEY=" in text and len(text.split("SM_SECRET_KEY=")[1].split()[0]) >= 48
    assert (lab.identity.stat().st_mode & 0o777) == 0o600


def test_ssh_host_keys_are_strictly_checked(lab, tmp_path):
    name, address = lab.hosts[0].name, lab.hosts[0].address
    assert ok(lab.ssh(name, ["true"])) == ""
    # A known_hosts holding another key for this address is refused.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(f"{name},{address} {other.with_suffix('.pub').read_text()}")
    proc = lab.ssh(name, ["true"], extra=["-o", f"UserKnownHostsFile={wrong}"])
    assert proc.returncode == 255
    assert b"host key" in proc.stderr.lower() or b"verification failed" in proc.stderr.lower()
    # So is an empty one: unknown hosts are never accepted.
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    proc = lab.ssh(name, ["true"], extra=["-o", f"UserKnownHostsFile={empty}"])
    assert proc.returncode == 255
    assert not empty.read_text()


# ---------------------------------------------------------------- systemd inside a host

def test_systemd_runs_and_starts_units(lab):
    name = lab.hosts[1].name
    state = lab.ssh(name, ["systemctl", "is-system-running", "--wait"], timeout=90)
    assert out(state) in ("running", "degraded"), state.stderr
    unit = "smship-lab-sleep-" + secrets.token_hex(4)
    ok(lab.ssh(name, cmd("systemd-run", f"--unit={unit}", "sleep", "300", sudo=True)))
    assert ok(lab.ssh(name, ["systemctl", "is-active", unit])) == "active"
    ok(lab.ssh(name, cmd("systemctl", "stop", unit, sudo=True)))
    assert lab.ssh(name, ["systemctl", "is-active", unit]).returncode != 0
    # The SSH user lingers: its user manager (and slice) stays up between sessions, so a command's
    # session is never caught in the stop logind gives the slice after the previous one ended.
    assert ok(lab.ssh(name, ["loginctl", "show-user", "deploy", "-p", "Linger", "--value"])) == "yes"
    assert ok(lab.ssh(name, ["sh", "-c", 'systemctl is-active "user@$(id -u).service"'])) == "active"


def test_a_unit_is_reachable_over_the_bridge(lab):
    name, address = lab.hosts[2].name, lab.hosts[2].address
    token = secrets.token_hex(16)
    ok(lab.ssh(name, cmd("install", "-d", "-m", "0755", "/srv/www", sudo=True)))
    ok(lab.ssh(name, cmd("tee", "/srv/www/token.txt", sudo=True, stdin=token.encode())))
    unit = "smship-lab-http-" + secrets.token_hex(4)
    ok(lab.ssh(name, cmd("systemd-run", f"--unit={unit}", "--property=WorkingDirectory=/srv/www",
                         "python3", "-m", "http.server", "8080", "--bind", address, sudo=True)))
    try:
        url = f"http://{address}:8080/token.txt"
        body, deadline = None, time.monotonic() + 20
        while body is None:
            try:
                with direct_opener().open(url, timeout=2) as resp:
                    body = resp.read().decode()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert body == token
    finally:
        lab.ssh(name, cmd("systemctl", "stop", unit, sudo=True))


# ---------------------------------------------------------------- faults

def test_stop_is_a_clean_poweroff_and_start_brings_it_back(lab):
    name = "lab3"
    key = ok(lab.ssh(name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]))
    before = boot_id(lab, name)
    install_stopmark(lab, name)
    lab.stop(name)
    assert not lab.is_running(name)
    assert lab.ssh(name, ["true"], connect_timeout=2, timeout=15).returncode == 255
    lab.start(name)
    assert boot_id(lab, name) != before
    # The unit's ExecStop ran: the host shut down cleanly. Strict ssh worked: same key.
    assert ok(lab.ssh(name, ["cat", "/var/lib/smship-stopmark"])) == "clean"
    assert ok(lab.ssh(name, ["cat", "/etc/ssh/ssh_host_ed25519_key.pub"])) == key


def test_kill_is_a_power_loss_and_start_brings_it_back(lab):
    name = "lab2"
    before = boot_id(lab, name)
    install_stopmark(lab, name)
    t0 = time.monotonic()
    lab.kill(name)
    assert time.monotonic() - t0 < 5
    assert not lab.is_running(name)
    assert lab.ssh(name, ["true"], connect_timeout=2, timeout=15).returncode == 255
    lab.start(name)
    assert boot_id(lab, name) != before
    # Nothing was stopped: no ExecStop ran.
    assert lab.ssh(name, ["test", "-e", "/var/lib/smship-stopmark"]).returncode == 1


def test_partition_cuts_the_network_and_heal_restores_it(lab):
    name, address = "lab1", lab.address("lab1")
    before = boot_id(lab, name)
    lab.partition(name)
    assert lab.is_running(name)
    t0 = time.monotonic()
    proc = lab.ssh(name, ["true"], connect_timeout=2, timeout=10)
    assert proc.returncode == 255
    assert time.monotonic() - t0 < 8
    assert not hostmod.ssh_port_open(address, 0.5)
    lab.heal(name)
    lab.wait_ssh(name, timeout=30)
    assert boot_id(lab, name) == before       # same boot: the host never went down


def test_reboot_inside_a_host_comes_back(lab):
    name = "lab3"
    before = boot_id(lab, name)
    lab.ssh(name, cmd("systemctl", "reboot", sudo=True), timeout=15)
    deadline = time.monotonic() + 60
    after = before
    while after == before:
        assert time.monotonic() < deadline, "host did not come back from reboot"
        time.sleep(0.5)
        proc = lab.ssh(name, ["cat", "/proc/sys/kernel/random/boot_id"], connect_timeout=2,
                       timeout=10)
        if proc.returncode == 0:
            after = out(proc)
    assert lab.is_running(name)


def test_fixture_restores_hosts_a_test_left_down(lab):
    # Runs after tests that stop/kill/partition hosts: everything answers again.
    lab.partition("lab2")
    lab.restore()
    for h in lab.hosts:
        assert ok(lab.ssh(h.name, ["true"], connect_timeout=3)) == ""


# ---------------------------------------------------------------- CLI

def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    code = ("import sys\n"
            "from invoke import Collection, Program\n"
            "from smship.lab import tasks\n"
            "root = Collection(); root.add_collection(tasks.ns)\n"
            "Program(namespace=root, name='smship', binary='smship').run("
            "['smship', *sys.argv[1:]])\n")
    full_env = dict(os.environ, COLUMNS="160", PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          timeout=120, env=full_env, cwd=REPO)


def test_status_command_and_fault_commands(lab):
    assert run_cli("lab.partition", "lab3", "--dir", str(lab.dir)).returncode == 0
    proc = run_cli("lab.status", "--dir", str(lab.dir))
    text = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    lines = {line.split()[1]: line for line in text.splitlines()
             if line.startswith("│")}
    assert set(lines) == {"lab1", "lab2", "lab3"}, text
    for h in lab.hosts:
        assert h.address in lines[h.name]
    assert "running" in lines["lab1"] and "yes" in lines["lab1"]
    assert "partitioned" in lines["lab3"] and "no" in lines["lab3"].split()
    assert run_cli("lab.heal", "lab3", "--dir", str(lab.dir)).returncode == 0
    lab.wait_ssh("lab3", timeout=30)


def test_fault_command_on_unknown_host_says_so(lab):
    proc = run_cli("lab.kill", "nosuchhost", "--dir", str(lab.dir))
    assert proc.returncode == 1
    assert "no lab host named 'nosuchhost'" in proc.stdout.decode()


# ---------------------------------------------------------------- a second lab: speed, crash, teardown

def machine_traces(second: Lab) -> list[str]:
    found = list(second.residue())
    if Path("/sys/class/net", second.net.bridge).exists():
        found.append("bridge")
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, check=True)
    if second.net.nft_table.encode() in tables.stdout:
        found.append("nft table")
    if str(second.dir).encode() in Path("/proc/self/mountinfo").read_bytes():
        found.append("mounts")
    procs = subprocess.run(["pgrep", "-f", f"--directory={second.dir}/"], capture_output=True)
    if procs.stdout.strip():
        found.append(f"nspawn processes {procs.stdout.decode().split()}")
    return found


@pytest.fixture
def second_lab(lab, tmp_path):
    """Another lab on its own bridge, removed after the test whatever happens."""
    other = Lab(tmp_path / "lab2", bridge="smshiptest1", subnet="192.168.252.0/24")
    yield other
    other.down()
    assert machine_traces(other) == []


def test_cached_up_is_fast_and_down_leaves_nothing(lab, second_lab):
    forward_before = network.read_ip_forward()
    result = second_lab.up(hosts=3, image_name=lab.image)
    assert result.image_built is False
    assert result.seconds < 30
    assert [s.ssh for s in second_lab.status()] == [True, True, True]
    assert machine_traces(second_lab) != []
    second_lab.down()
    assert machine_traces(second_lab) == []
    assert network.read_ip_forward() == forward_before
    # The session lab is untouched.
    assert ok(lab.ssh("lab1", ["true"])) == ""


def test_up_cleans_up_a_crashed_lab(lab, second_lab):
    second_lab.up(hosts=1, image_name=lab.image)
    first_pid = hostmod.nspawn_pid(second_lab.spec("lab1"))
    # A crash of whatever ran the lab: hosts still running, state file lost.
    second_lab.state_file.unlink()
    assert machine_traces(second_lab) != []
    again = Lab(second_lab.dir, bridge=second_lab.net.bridge, subnet=str(second_lab.net.subnet))
    again.up(hosts=1, image_name=lab.image)
    assert not hostmod._alive(first_pid)
    assert ok(again.ssh("lab1", ["true"])) == ""
    assert len(nspawn_processes(again.run_dir)) == 1


def test_the_lab_counts_the_cpu_its_hosts_use(lab):
    """What the benchmark reads beside its commands: hosts share this machine's cores."""
    before = lab.lab.cpu_seconds()
    started = time.monotonic()
    assert before is not None and before > 0
    # Half a second of CPU on one host, however long a busy machine takes to give it; the process
    # has exited when the count is read. Bounded in wall time too, so a stuck host fails the test.
    spin = (
        "import time\n"
        "deadline = time.monotonic() + 60\n"
        "while time.process_time() < 0.5 and time.monotonic() < deadline: pass\n"
        "print(time.process_time())"
    )
    busy = lab.ssh(lab.hosts[1].name, ["python3", "-c", spin])
    assert busy.returncode == 0, busy.stderr
    spent = float(busy.stdout.strip())
    assert spent >= 0.5, spent
    used = lab.lab.cpu_seconds() - before
    elapsed = time.monotonic() - started
    # The count holds that process's CPU, and no more than every core busy all along could give.
    assert spent <= used <= (os.cpu_count() or 1) * elapsed + 0.1, (spent, used, elapsed)
