"""`smship status` and `smship logs` on a deployed 3-host lab.

The lab: lab1 = [db, lb, beat], lab2 and lab3 = [web, worker]; the app logs
JSON (SM_LOG_FORMAT=json).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from labkit import ENV, postgres_unit, remote, web_unit, worker_unit

pytestmark = pytest.mark.lab

PREFIX = re.compile(r"^(lab[123]) +\| (.*)$")


def live_release(lab, host: str) -> str:
    return remote(lab, host, "basename \"$(readlink /srv/refapp/current)\"").strip()


def by_host(stdout: str) -> dict[str, list[str]]:
    """Lines grouped by their host prefix; every line must have one."""
    found: dict[str, list[str]] = {}
    for line in stdout.splitlines():
        match = PREFIX.match(line)
        assert match, f"a line without its host prefix: {line!r}"
        found.setdefault(match.group(1), []).append(match.group(2))
    return found


def json_lines(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_status_shows_release_units_uptime_readiness_and_disk(lab, smship, deployed):
    release = live_release(lab, "lab2")
    table = smship("status", ENV, check=True)
    for host in ("lab1", "lab2", "lab3"):
        row = next(line for line in table.stderr.splitlines() if f" {host} " in line)
        assert release in row and "GiB" in row, row
    assert re.search(r"refapp-web@[ab] +│ active +│ \d+m\d\ds", table.stderr), table.stderr
    assert postgres_unit(lab) in table.stderr and "refapp-beat" in table.stderr

    document = smship("status", ENV, "-o", "json", check=True).document
    hosts = document["hosts_status"]
    assert set(hosts) == {"lab1", "lab2", "lab3"}
    for name in ("lab2", "lab3"):
        web = hosts[name]["units"][web_unit(lab, name)]
        assert web["state"] == "active" and web["uptime"] > 0, web
        assert hosts[name]["ready"] == "healthy"
        assert hosts[name]["current"] == release and hosts[name]["free_bytes"] > 2 ** 20
        assert hosts[name]["roles"] == ["web", "worker"]
    assert hosts["lab1"]["units"]["refapp-beat.service"]["state"] == "active"
    assert hosts["lab1"]["ready"] is None  # no web unit there


def test_status_shows_a_stopped_unit(lab, smship, deployed):
    stopped, serving = worker_unit(lab, "lab3"), worker_unit(lab, "lab2")
    try:
        remote(lab, "lab3", f"systemctl stop {stopped}")
        document = smship("status", ENV, "-o", "json").document
        assert document["hosts_status"]["lab3"]["units"][stopped]["state"] == "inactive"
        assert document["hosts_status"]["lab2"]["units"][serving]["state"] == "active"
    finally:
        remote(lab, "lab3", f"systemctl start {stopped}")


def test_logs_prefix_every_line_with_its_host_and_keep_json_whole(lab, smship, deployed):
    run = smship("logs", ENV, "--since", "30m", check=True)
    found = by_host(run.stdout)
    assert set(found) == {"lab1", "lab2", "lab3"}, run.stderr
    for host, lines in found.items():
        entries = json_lines(lines)
        assert entries, (host, lines[:5])
        assert all("level" in e and "message" in e for e in entries)
    assert any(e["logger"] == "celery.beat" for e in json_lines(found["lab1"]))
    # Nothing is left running on a host once the command returned.
    assert remote(lab, "lab2", "pgrep -c journalctl || true").strip() == "0"


def test_logs_role_filter(lab, smship, deployed):
    beat = by_host(smship("logs", ENV, "--role", "beat", "--lines", "5", check=True).stdout)
    assert set(beat) == {"lab1"} and 0 < len(beat["lab1"]) <= 5
    web = by_host(smship("logs", ENV, "--role", "web", "--since", "30m", check=True).stdout)
    assert set(web) == {"lab2", "lab3"}
    loggers = {e["logger"] for lines in web.values() for e in json_lines(lines)}
    assert "refapp.request" in loggers and "celery.beat" not in loggers
    wrong = smship("logs", ENV, "--role", "cache")
    assert wrong.returncode != 0 and "--role 'cache'" in wrong.output


def test_logs_follow_streams_new_lines_until_terminated(lab, deployed):
    marker = f"/smship-logs-probe-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "NO_COLOR": "1"}
    follow = subprocess.Popen([sys.executable, "-m", "smship", "logs", ENV, "--role", "web", "-f", "-i",
                               str(lab.inventory)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(l.decode()) for l in follow.stdout], daemon=True)
    reader.start()
    try:
        time.sleep(3)  # both hosts' streams are open
        deadline, seen = time.monotonic() + 60, None
        while seen is None and time.monotonic() < deadline:
            subprocess.run(["curl", "-sk", "-o", "/dev/null", "-H", "Host: refapp.lab.test",
                            f"https://{lab.address('lab3')}{marker}"], timeout=20)
            try:
                while seen is None:
                    line = lines.get(timeout=2)
                    if marker in line and "refapp.request" in line:  # the app's own request log
                        seen = line
            except queue.Empty:
                pass
        assert seen, "the request never showed up in the followed journal"
        match = PREFIX.match(seen.rstrip("\n"))
        assert match and match.group(1) == "lab3", seen
        assert json.loads(match.group(2))["path"] == marker
        assert follow.poll() is None, "logs -f ended on its own"
    finally:
        follow.send_signal(signal.SIGTERM)
        try:
            code = follow.wait(timeout=20)
        except subprocess.TimeoutExpired:
            follow.kill()
            raise
    assert code == 0, follow.stderr.read().decode()
    # The remote journalctl -f ends with the connection.
    deadline = time.monotonic() + 15
    while remote(lab, "lab3", "pgrep -c journalctl || true").strip() != "0":
        assert time.monotonic() < deadline, remote(lab, "lab3", "pgrep -a journalctl || true")
        time.sleep(1)


def test_smship_leaves_its_programs_out_of_the_hosts_journals(lab, smship, deployed):
    """sudo and systemd log every command line they run: the agent's and the database probe's
    programs travel on stdin, so a run of the checks (both of them, on every host) logs no program."""
    marker = f"smship-journal-{uuid.uuid4().hex}"
    hosts = ("lab1", "lab2", "lab3")
    for host in hosts:
        remote(lab, host, f"logger -t smship-test {marker}")
    # Its verdicts are other tests' business (another test may have left a check failing): that it
    # asked every host and read the database is this one's.
    checked = smship("check", ENV).stderr
    assert re.search(r"hosts +pass", checked) and re.search(r"migrations +pass", checked), checked
    for host in hosts:
        since_marker = remote(lab, host, f"journalctl --no-pager -o cat --since -10min | sed -n '/{marker}/,$p'")
        assert marker in since_marker, host
        assert "smship agent" in since_marker or "python3 -c" in since_marker, since_marker[-2000:]
        for program_text in ("def activate(request)", "def main():", "known_error"):
            assert program_text not in since_marker, f"{host} logged {program_text!r}"
