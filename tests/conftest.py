"""Shared pytest fixtures.

Lab fixtures: tests marked ``lab`` (or using the ``lab`` fixture, which marks them)
run against real Debian hosts booted with systemd-nspawn on a private bridge of this
machine. They need Linux and root and fail plainly without them.

The test lab is separate from a user's own lab so running tests never touches it:
    SMSHIP_TEST_LAB_DIR     default /var/lib/smship/lab-test
    SMSHIP_TEST_LAB_BRIDGE  default smshiptest0
    SMSHIP_TEST_LAB_SUBNET  default 192.168.251.0/24
    SMSHIP_LAB_IMAGE        image to boot, default fat (base or fat)
    SMSHIP_LAB_DISTRO       Debian release of the hosts, default trixie (Debian 13) or bookworm (12)
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pytest

LAB_DIR = os.environ.get("SMSHIP_TEST_LAB_DIR", "/var/lib/smship/lab-test")
LAB_BRIDGE = os.environ.get("SMSHIP_TEST_LAB_BRIDGE", "smshiptest0")
LAB_SUBNET = os.environ.get("SMSHIP_TEST_LAB_SUBNET", "192.168.251.0/24")
LAB_IMAGE = os.environ.get("SMSHIP_LAB_IMAGE", "fat")
LAB_DISTRO = os.environ.get("SMSHIP_LAB_DISTRO", "trixie")
LAB_HOSTS = 3
REFERENCE_APP = Path(__file__).resolve().parents[1] / "examples" / "smpy-app"


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt, as under a terminal: a test runner started in the background
    (``&`` in a script, nohup) gets SIGINT ignored, and Python then leaves it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: needs the local lab (root, Linux, systemd-nspawn hosts on a bridge)")
    config.addinivalue_line(
        "markers", "debian12: the main story, run a second time on Debian 12 hosts "
                   "(SMSHIP_LAB_DISTRO=bookworm pytest -m debian12 tests/lab)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "lab" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("lab"):
            item.add_marker(pytest.mark.lab)


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str


def require_lab_platform() -> None:
    """Fail (never skip) a lab test that cannot run here, saying why."""
    if not sys.platform.startswith("linux"):
        pytest.fail(f"lab tests need Linux (systemd-nspawn); this is {sys.platform}",
                    pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("lab tests need root: they create a bridge, nftables rules, mounts and "
                    "systemd-nspawn hosts. Run pytest as root (CI does), or deselect them "
                    "with -m 'not lab'.", pytrace=False)
    from smship.lab.system import missing_tools
    missing = missing_tools()
    if missing:
        pytest.fail("lab tests need these apt packages: " + " ".join(missing)
                    + " (run scripts/setup-deps)", pytrace=False)


class LabFixture:
    """A running 3-host lab for tests.

    hosts            [LabHost(name, address)], lab1 first
    dir, inventory, ssh_config, known_hosts, identity, secrets   paths
    ssh(host, argv, timeout=60, **kw) -> CompletedProcess   (system ssh + lab ssh_config;
                     argv is a list of words or a smship.command.Command)
    stop/start/kill/partition/heal(host), wait_ssh(host, timeout=60)
    address(host), is_running(host), restore()
    """

    def __init__(self, lab, up_result) -> None:
        self.lab = lab
        self.up_result = up_result
        self.hosts = [LabHost(n, a) for n, a in lab.hosts]
        self.dir: Path = lab.dir
        self.inventory: Path = lab.inventory
        self.ssh_config: Path = lab.ssh_config
        self.known_hosts: Path = lab.known_hosts
        self.identity: Path = lab.identity
        self.secrets: Path = lab.secrets
        self.image: str = up_result.image
        self.distro: str = up_result.distros[0]

    def address(self, host: str) -> str:
        for h in self.hosts:
            if h.name == host:
                return h.address
        raise KeyError(host)

    def ssh(self, host: str, argv: Sequence[str] | object, timeout: float = 60,
            **kwargs) -> subprocess.CompletedProcess:
        return self.lab.ssh(host, argv, timeout=timeout, **kwargs)

    def wait_ssh(self, host: str, timeout: float = 60) -> float:
        return self.lab.wait_ssh([host], timeout=timeout)

    def stop(self, host: str) -> None:
        self.lab.stop(host)

    def start(self, host: str, wait: float = 60) -> None:
        self.lab.start(host, wait=wait)

    def kill(self, host: str) -> None:
        self.lab.kill(host)

    def partition(self, host: str) -> None:
        self.lab.partition(host)

    def heal(self, host: str) -> None:
        self.lab.heal(host)

    def is_running(self, host: str) -> bool:
        from smship.lab import host as hostmod
        return hostmod.is_running(self.lab.spec(host))

    def restore(self) -> None:
        """Bring every host back up and reachable (after a test left one down)."""
        from smship.lab import host as hostmod
        for spec in self.lab.specs():
            if not hostmod.is_running(spec):
                hostmod.boot(spec)
            elif hostmod.is_partitioned(spec):
                hostmod.heal(spec)
        self.lab.wait_ssh(timeout=90)


@pytest.fixture(scope="session")
def lab():
    """A 3-host lab booted once per session, removed at the end (also on failure)."""
    require_lab_platform()
    from smship.lab import Lab

    the_lab = Lab(LAB_DIR, bridge=LAB_BRIDGE, subnet=LAB_SUBNET)
    done = False

    def teardown() -> None:
        nonlocal done
        if not done:
            done = True
            the_lab.down()

    atexit.register(teardown)          # also after Ctrl-C or a crash of the session
    started = time.monotonic()
    try:
        result = the_lab.up(hosts=LAB_HOSTS, image_name=LAB_IMAGE, app=REFERENCE_APP, distro=LAB_DISTRO)
    except BaseException:
        teardown()
        raise
    result.fixture_seconds = time.monotonic() - started
    try:
        yield LabFixture(the_lab, result)
    finally:
        teardown()
        atexit.unregister(teardown)
        leftovers = the_lab.residue()
        assert not leftovers, f"lab teardown left: {leftovers}"


@pytest.fixture(autouse=True)
def _lab_hosts_restored(request: pytest.FixtureRequest):
    """After a lab test, restore any host it left stopped, killed or partitioned."""
    yield
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").restore()
