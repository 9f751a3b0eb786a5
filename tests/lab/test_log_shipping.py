"""Log shipping on the session's deployed fleet: a `logs` section with the collector on lab1.

The lab: lab1 = [db, lb, beat] (the collector, and an app host through beat),
lab2 and lab3 = [web, worker]. lab3 is killed after logging a marker and
started again before the module ends.
"""

from __future__ import annotations

import re
import subprocess
import uuid

import pytest

from labkit import ENV, lab_env, remote, write_inventory

pytestmark = pytest.mark.lab

COLLECTOR = "lab1"
REMOTE_DIR = "/var/log/journal/remote"
# Logged on lab2 before shipping is set up: a long journal, as a host that has run for months has
# (the lab's journal lives in 32 MB of memory: it keeps 10,000-20,000 of them, after the tests before).
HISTORY_TAG = "smship-history"
HISTORY_LINES = 50_000


@pytest.fixture(scope="module")
def shipping(lab, smship, deployed, tmp_path_factory):
    """The fleet provisioned with a logs section (its inventory); lab3 running again at the end."""
    inventory = write_inventory(lab, tmp_path_factory.mktemp("logs"),
                                lambda data: lab_env(data).update(logs={"collector": COLLECTOR}))
    # A unit of its own, free of journald's rate limit, which would keep only the first lines.
    remote(lab, "lab2", f"systemd-run --wait --quiet -p LogRateLimitIntervalSec=0 -p SyslogIdentifier={HISTORY_TAG} "
                        f"seq {HISTORY_LINES}")
    first = smship("provision", ENV, "-o", "json", inventory=inventory, check=True)
    assert set(first.statuses()) == {"lab1", "lab2", "lab3"}
    # Hosts are provisioned in parallel: an uploader that started before the collector listened
    # failed, and systemd starts it again 5 s later. Each must settle running.
    for host in ("lab1", "lab2", "lab3"):
        remote(lab, host, "for i in $(seq 60); do systemctl is-active -q systemd-journal-upload && exit 0; sleep 0.5; "
                          "done; journalctl -u systemd-journal-upload -n 20 --no-pager; exit 1")
    try:
        yield inventory
    finally:
        if not lab.is_running("lab3"):
            lab.start("lab3")


def uploads_seen(lab) -> dict[str, str]:
    """What each uploader and the collector logged lately: why a marker did not arrive."""
    seen = {host: remote(lab, host, "systemctl status --no-pager -n 15 systemd-journal-upload || true")
            for host in ("lab1", "lab2", "lab3")}
    seen["collector"] = remote(lab, COLLECTOR, "systemctl status --no-pager -n 15 systemd-journal-remote || true; "
                                               f"ls -l --time-style=+%T {REMOTE_DIR}; date +%T")
    return seen


def web_request(lab, host: str, path: str) -> None:
    """One request to ``host``'s site: the app logs its path (refapp.request)."""
    subprocess.run(["curl", "-sk", "-o", "/dev/null", "--max-time", "20", "-H", "Host: refapp.lab.test",
                    f"https://{lab.address(host)}{path}"], timeout=30, check=True)


def test_a_second_provision_changes_nothing(smship, shipping):
    again = smship("provision", ENV, "-o", "json", inventory=shipping, check=True)
    assert all(s == ["ok"] for s in again.statuses().values()), str(again)


def test_the_collector_keeps_its_files_from_the_app_user(lab, shipping):
    listing = remote(lab, COLLECTOR, f"stat -c '%a %U %G %n' {REMOTE_DIR} {REMOTE_DIR}/*.journal")
    modes = dict(reversed(line.split(" ", 3)[::3]) for line in listing.splitlines())
    assert modes[REMOTE_DIR] == "750", listing
    assert len(modes) >= 4, f"a journal file per app host expected: {listing}"
    assert all(mode in ("640", "600") for path, mode in modes.items() if path != REMOTE_DIR), listing
    # lab1 is an app host (beat): its app user exists there and must read none of it.
    for path in [REMOTE_DIR] + [p for p in modes if p != REMOTE_DIR][:1]:
        denied = lab.ssh(COLLECTOR, ["sudo", "runuser", "-u", "refapp", "--", "cat" if path != REMOTE_DIR else "ls",
                                     path], timeout=30)
        assert denied.returncode != 0 and b"Permission denied" in denied.stderr, (path, denied)


def test_what_a_host_logged_before_shipping_was_set_up_stays_on_the_host(lab, shipping):
    kept = int(remote(lab, "lab2", f"journalctl -q -t {HISTORY_TAG} -o cat | wc -l"))
    shipped = int(remote(lab, COLLECTOR, f"journalctl -q -D {REMOTE_DIR} -t {HISTORY_TAG} -o cat | wc -l"))
    assert (kept >= 1_000, shipped) == (True, 0), f"lab2 kept {kept} lines of its history, the collector has {shipped}"


def test_check_log_format_verifies_shipping_and_names_a_host_whose_uploader_stopped(lab, smship, shipping):
    passed = smship("check", ENV, "-o", "json", inventory=shipping)
    verdict = {c["name"]: c for c in passed.document["checks"]}["log-format"]
    assert verdict["status"] == "pass" and "reached the collector lab1" in verdict["reason"], \
        (verdict, uploads_seen(lab))
    # The collector's port refuses this machine (not an app host), as the db host's ports do.
    firewall = {c["name"]: c for c in passed.document["checks"]}["firewall"]
    assert firewall["status"] == "pass" and "lab1:19532" in firewall["reason"], firewall
    remote(lab, "lab2", "systemctl stop systemd-journal-upload")
    try:
        failed = smship("check", ENV, "-o", "json", inventory=shipping, check=False)
        verdict = {c["name"]: c for c in failed.document["checks"]}["log-format"]
        assert verdict["status"] == "fail", verdict
        assert "lab2: its marker did not reach lab1" in verdict["reason"], verdict
        assert "lab3" not in verdict["reason"] and "journalctl -u systemd-journal-upload" in verdict["fix"], verdict
    finally:
        remote(lab, "lab2", "systemctl start systemd-journal-upload")


def test_a_killed_hosts_lines_are_read_from_the_collector(lab, smship, shipping):
    marker = f"/smship-shipped-{uuid.uuid4().hex[:12]}"
    web_request(lab, "lab3", marker)
    # Shipped as it is written; the collector is given a moment, then lab3 dies at once.
    remote(lab, COLLECTOR, f"for i in $(seq 50); do journalctl -D {REMOTE_DIR} -o cat | grep -q -- '{marker}' && exit 0; "
                           "sleep 0.2; done; exit 1")
    lab.kill("lab3")
    shown = smship("logs", ENV, "--role", "web", "--since", "10m", inventory=shipping, check=True)
    lines = [line for line in shown.stdout.splitlines() if marker in line]
    assert lines and all(re.match(r"^lab3 +\| ", line) for line in lines), shown
    assert "lab3: not reached over SSH; its lines from the collector lab1" in shown.stderr, shown
    assert any(line.startswith("lab2 ") for line in shown.stdout.splitlines()), "lab2 is read from itself"
    every = smship("logs", ENV, "--role", "web", "--since", "10m", "--from-collector", inventory=shipping, check=True)
    assert any(marker in line and line.startswith("lab3 ") for line in every.stdout.splitlines()), every
    lab.start("lab3")


def test_taking_the_logs_section_out_stops_the_uploaders_and_the_collector(lab, smship, shipping):
    if not lab.is_running("lab3"):
        lab.start("lab3")
    smship("provision", ENV, inventory=lab.inventory, check=True)
    for host in ("lab1", "lab2", "lab3"):
        state = remote(lab, host, "systemctl is-active systemd-journal-upload; systemctl is-enabled systemd-journal-upload; "
                                  "ls /etc/systemd/system/systemd-journal-upload.service.d/smship.conf "
                                  "/etc/smship/logs/upload.key 2>&1 | grep -c 'No such file'; true")
        assert state.split() == ["inactive", "disabled", "2"], (host, state)
    collector = remote(lab, COLLECTOR, "systemctl is-active systemd-journal-remote.socket; "
                                       "ls /etc/smship/logs/collector.key 2>&1 | grep -c 'No such file'; "
                                       "nft list table inet smship | grep -c 19532; true")
    assert collector.split() == ["inactive", "1", "0"], collector
    again = smship("provision", ENV, "-o", "json", inventory=lab.inventory, check=True)
    assert all(statuses == ["ok"] for statuses in again.statuses().values()), again
