"""Debian 12 and 13 hosts: the host's own facts decide Postgres and Python; a fleet whose app
hosts run different Pythons is refused before anything changes.

The session's lab runs one Debian release (SMSHIP_LAB_DISTRO); the mixed-fleet test adds one
host of the other release to it for its own inventory, and removes it afterwards.

Network rule: these tests talk only to the lab hosts' addresses on the test bridge.
"""

from __future__ import annotations

import json

import pytest

from labkit import ENV, POSTGRES_MAJOR, lab_env, remote, write_inventory

pytestmark = pytest.mark.lab

OTHER = {"trixie": "bookworm", "bookworm": "trixie"}
PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
DEBIAN = {"bookworm": "Debian GNU/Linux 12 (bookworm)", "trixie": "Debian GNU/Linux 13 (trixie)"}
MIXED_APP = "mixedpy"


def test_the_hosts_own_postgres_and_python_run_the_app(lab, smship, deployed):
    assert remote(lab, "lab1", "pg_lsclusters -h").split()[0] == str(POSTGRES_MAJOR[lab.distro])
    venv = remote(lab, "lab2", "/srv/refapp/current/.venv/bin/python -c "
                               "'import sys; print(\"%d.%d\" % sys.version_info[:2])'").strip()
    assert venv == PYTHON[lab.distro]
    manifest = json.loads(remote(lab, "lab2", "cat /srv/refapp/current/release.json"))
    assert manifest["python"] == PYTHON[lab.distro] and f"cpython {PYTHON[lab.distro]}." in manifest["target"]
    checks = {c["name"]: c for c in smship("check", ENV, "-o", "json").document["checks"]}
    assert checks["hosts-os"]["status"] == "pass", checks["hosts-os"]
    assert checks["hosts-os"]["reason"] == f"lab1, lab2, lab3: {DEBIAN[lab.distro]}, supported"


@pytest.fixture(scope="module")
def other_host(lab):
    """One more host, of the other Debian release, on the session's bridge."""
    name, address = lab.lab.add(OTHER[lab.distro])
    try:
        yield name, address
    finally:
        lab.lab.remove(name)
        for script in ("systemctl disable --now mixedpy-worker@a.service mixedpy-worker@b.service 2>/dev/null || true",
                       "rm -f /etc/systemd/system/mixedpy-worker@.service && systemctl daemon-reload",
                       "userdel mixedpy 2>/dev/null || true; rm -rf /srv/mixedpy"):
            remote(lab, "lab3", script)


def untouched(lab, hosts: list[str]) -> None:
    for host in hosts:
        assert remote(lab, host, f"test -e /srv/{MIXED_APP}/releases && ls /srv/{MIXED_APP}/releases || true") \
            .strip() == "", host


def test_a_fleet_mixing_debian_12_and_13_app_hosts_is_refused_before_anything_changes(lab, smship, other_host,
                                                                                        tmp_path):
    other, address = other_host
    mine, theirs = PYTHON[lab.distro], PYTHON[OTHER[lab.distro]]

    def mixed(data: dict) -> None:
        data["app"]["name"] = MIXED_APP
        env = lab_env(data)
        env["domain"] = "mixedpy.lab.test"
        env["hosts"] = [{"name": "lab3", "address": lab.address("lab3"), "roles": ["worker"]},
                        {"name": other, "address": address, "roles": ["worker", "beat"]}]

    inventory = write_inventory(lab, tmp_path, mixed)
    refused = smship("provision", ENV, inventory=inventory, check=False)
    assert refused.returncode == 1, refused
    assert "different Python versions" in refused.output and "nothing was changed" in refused.output
    assert f"{theirs}: {other}" in refused.output and f"{mine}: lab3" in refused.output
    for host in ("lab3", other):
        assert remote(lab, host, f"test -e /srv/{MIXED_APP} && echo present || echo absent").strip() == "absent"

    # Provisioned one host at a time (what --limit allows), the deploy still refuses before shipping.
    for host in ("lab3", other):
        smship("provision", ENV, "--limit", host, inventory=inventory, check=True)
    deploy = smship("deploy", ENV, inventory=inventory, check=False)
    assert deploy.returncode == 1, deploy
    assert "different Python versions" in deploy.output and f"{theirs}: {other}" in deploy.output
    untouched(lab, ["lab3", other])
    checks = {c["name"]: c for c in smship("check", ENV, "-o", "json", inventory=inventory).document["checks"]}
    assert checks["hosts-os"]["status"] == "fail" and "mix Python versions" in checks["hosts-os"]["reason"]
    assert DEBIAN[OTHER[lab.distro]] in checks["hosts-os"]["reason"]
