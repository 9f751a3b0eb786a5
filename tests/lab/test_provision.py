"""`smship provision` against real hosts: idempotence, --check --diff, TLS, hardening.

Network rule: these tests talk only to the lab hosts' addresses on the test bridge.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import subprocess
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

import pytest

from labkit import (ENV, WEB, assert_no_failed_request, lab_env, postgres_unit, remote, steady_clients, wait_state,
                    web_unit, worker_unit, write_inventory)

pytestmark = pytest.mark.lab

DOMAIN = "refapp.lab.test"
BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SITE = "/etc/nginx/sites-available/refapp.conf"
# Units whose process must survive a provisioning run that changes nothing.
WATCHED = ["nginx", "redis-server", '"$web.socket"', '"$web.service"', '"$worker"', "refapp-beat.service"]


def process_snapshot(lab, host: str) -> str:
    """Each watched unit's main PID and start time, and nginx's workers (a reload replaces them)."""
    # The serving web slot (nginx's link names its socket); none on a host without the web role.
    # And the serving worker slot, by the link naming it.
    script = ('web=refapp-web@"$(basename "$(readlink /var/www/refapp/web/uvicorn.sock 2>/dev/null)" .sock)"; '
              "worker=refapp-worker@\"$(readlink /srv/refapp/worker/live 2>/dev/null | sed 's/.*slot-//')\".service; "
              "for u in " + " ".join([postgres_unit(lab), *WATCHED]) + "; do "
              'echo "$u $(systemctl show -p MainPID -p ActiveEnterTimestampMonotonic --value "$u" | tr "\\n" " ")"; '
              "done; echo nginx-workers $(pgrep -P \"$(systemctl show -p MainPID --value nginx)\" | sort)")
    return remote(lab, host, script)


def test_first_run_changes_every_host_and_a_second_run_changes_and_restarts_nothing(lab, smship, provisioned):
    first = provisioned.statuses()
    assert set(first) == {h.name for h in lab.hosts}
    assert all(statuses == ["changed"] for statuses in first.values()), provisioned

    before = {h.name: process_snapshot(lab, h.name) for h in lab.hosts}
    again = smship("provision", ENV, "-o", "json", check=True)
    assert again.statuses() == {h.name: ["ok"] for h in lab.hosts}, again
    assert {h.name: process_snapshot(lab, h.name) for h in lab.hosts} == before
    # The distribution's facts (as remembered from the first run, confirmed) and the host's in one
    # round trip: a fleet in its desired state is neither locked nor changed.
    assert again.document["round_trips"] == {h.name: 1 for h in lab.hosts}, again.document["round_trips"]


def test_provisioning_never_shows_a_secret_and_the_env_file_is_private(lab, provisioned):
    stored = dict(line.split("=", 1) for line in Path(lab.secrets).read_text().splitlines()
                  if "=" in line and not line.startswith("#"))
    # The lab's three, and the upstream CA key the first provision of a fleet with an lb stores.
    assert list(stored) == ["SM_SECRET_KEY", "SM_DB_PASSWORD", "SM_REDIS_PASSWORD", "SMSHIP_UPSTREAM_CA_KEY"]
    values = list(stored.values())
    assert all(len(v) >= 24 for v in values)
    assert not any(v in provisioned.output for v in values)
    for host in ("lab2", "lab3"):
        assert remote(lab, host, "stat -c '%a %U' /srv/refapp/shared/env").split() == ["600", "root"]
        env_file = remote(lab, host, "cat /srv/refapp/shared/env")
        assert all(v in env_file for v in values[:1])


def site_sha(lab, host: str) -> str:
    return remote(lab, host, f"sha256sum {SITE}").split()[0]


def test_check_diff_shows_exactly_the_changed_template_and_changes_nothing(lab, smship, provisioned, tmp_path):
    builtin = (BUILTIN_TEMPLATES / "nginx-site.conf.j2").read_text()
    assert builtin.count("client_max_body_size 25m;") == 1
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "nginx-site.conf.j2").write_text(
        builtin.replace("client_max_body_size 25m;", "client_max_body_size 30m;"))
    inventory = write_inventory(lab, tmp_path, lambda data: None)
    before = {h: site_sha(lab, h) for h in ("lab2", "lab3")}

    run = smship("provision", ENV, "--check", "--diff", "-o", "json", inventory=inventory, check=True)

    assert run.statuses() == {"lab1": ["ok"], "lab2": ["changed"], "lab3": ["changed"]}, run
    changed = [line for line in run.output.splitlines()
               if re.match(r"^[+-](?![+-]{2} )", line) and not line.startswith(("+++", "---"))]
    assert changed == ["-    client_max_body_size 25m;", "+    client_max_body_size 30m;"] * 2, run
    assert run.output.count(f"--- {SITE}") == 2 or run.output.count(SITE) >= 2
    assert {h: site_sha(lab, h) for h in ("lab2", "lab3")} == before
    assert "client_max_body_size 25m;" in remote(lab, "lab2", f"cat {SITE}")


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for DOMAIN signed by it: (ca, certificate, key).

    Valid long enough for the checklist's expiry check, as the certificate stays on the hosts.
    """
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "90", "-subj", "/CN=smship test CA",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={DOMAIN}", "-keyout", "site.key",
            "-out", "site.csr")
    (directory / "san.ext").write_text(f"subjectAltName=DNS:{DOMAIN}\n")
    openssl("x509", "-req", "-in", "site.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "90", "-extfile", "san.ext", "-out", "site.crt")
    (directory / "site.key").chmod(0o600)
    return directory / "ca.crt", directory / "site.crt", directory / "site.key"


def fetch(address: str, context: ssl.SSLContext, request: bytes) -> tuple[dict, bytes]:
    with socket.create_connection((address, 443), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=DOMAIN) as tls:
            tls.sendall(request)
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
            return tls.getpeercert(), data


def test_nginx_serves_https_with_the_configured_certificate(lab, smship, provisioned, tmp_path):
    ca, certificate, key = make_certificate(tmp_path)

    def use_files(data: dict) -> None:
        lab_env(data)["tls"] = {"source": "files", "certificate": str(certificate), "key": str(key)}

    inventory = write_inventory(lab, tmp_path / "project", use_files)
    run = smship("provision", ENV, "-o", "json", inventory=inventory, check=True)
    assert run.statuses() == {h.name: ["changed"] for h in lab.hosts}, run

    context = ssl.create_default_context(cafile=str(ca))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old_tls = ssl.create_default_context(cafile=str(ca))
        old_tls.minimum_version = ssl.TLSVersion.TLSv1
        old_tls.maximum_version = ssl.TLSVersion.TLSv1_1
    # Let this client speak TLS 1.1 at all, so that only the server can refuse it.
    old_tls.set_ciphers("DEFAULT:@SECLEVEL=0")
    serial = subprocess.run(["openssl", "x509", "-noout", "-serial", "-in", str(certificate)],
                            capture_output=True, text=True, check=True).stdout.strip().split("=")[1]
    for host in lab.hosts:      # the web hosts and the load balancer
        # /static/ is answered by nginx itself: nothing is deployed yet behind it.
        peer, answer = fetch(host.address, context, f"HEAD /static/ HTTP/1.1\r\nHost: {DOMAIN}\r\n"
                                                    "Connection: close\r\n\r\n".encode())
        assert peer["serialNumber"].upper() == serial.upper()
        assert ("DNS", DOMAIN) in peer["subjectAltName"]
        assert b"Strict-Transport-Security" in answer
        with pytest.raises(ssl.SSLError):
            fetch(host.address, old_tls, b"")
        assert remote(lab, host.name, "stat -c '%a %U' /etc/ssl/smship/refapp.key").split() == ["600", "root"]
        redirect = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                                   "-H", f"Host: {DOMAIN}", f"http://{host.address}/login?next=1"],
                                  capture_output=True, text=True, timeout=30)
        assert redirect.stdout == f"301 https://{DOMAIN}/login?next=1", redirect

    # The lab's own inventory (self-signed) keeps the certificate now in place.
    again = smship("provision", ENV, "-o", "json", check=True)
    assert again.statuses() == {h.name: ["ok"] for h in lab.hosts}, again


def test_every_app_unit_is_hardened_by_systemd_analyze_security(lab, provisioned):
    # Before a deploy no slot serves; both slots are instances of one template, analysed alike.
    units = {"lab1": ["refapp-beat.service"], "lab2": ["refapp-web@a.service", "refapp-worker@a.service"],
             "lab3": ["refapp-web@b.service", "refapp-worker@b.service"]}
    for host, names in units.items():
        for unit in names:
            report = remote(lab, host, f"systemd-analyze security --no-pager {unit}")
            score = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+) (\w+)", report)
            assert score, report
            assert float(score.group(1)) <= 2.5 and score.group(2) == "OK", (host, unit, score.group(0))
            for setting in ("NoNewPrivileges=", "PrivateTmp=", "ProtectSystem=", "ProtectHome="):
                line = next(l for l in report.splitlines() if setting in l)
                assert line.lstrip().startswith("✓"), (host, unit, line)


def test_moving_beat_to_another_host_stops_it_where_it_was(lab, smship, deployed, tmp_path):
    def move_beat(data: dict) -> None:
        for host in lab_env(data)["hosts"]:
            if host["name"] == "lab1":
                host["roles"] = [r for r in host["roles"] if r != "beat"]
            if host["name"] == "lab3":
                host["roles"] = host["roles"] + ["beat"]

    assert remote(lab, "lab1", "systemctl is-active refapp-beat.service").strip() == "active"
    moved = smship("provision", ENV, "-o", "json", inventory=write_inventory(lab, tmp_path, move_beat), check=True)
    try:
        assert moved.statuses() == {"lab1": ["changed"], "lab2": ["ok"], "lab3": ["changed"]}, moved
        assert "no beat unit (not the beat host)" in moved.output
        gone = lab.ssh("lab1", ["systemctl", "is-active", "refapp-beat.service"])
        assert gone.stdout.decode().strip() in ("inactive", "unknown"), gone
        assert remote(lab, "lab1", "test -e /etc/systemd/system/refapp-beat.service || echo absent").strip() == "absent"
        assert remote(lab, "lab3", "systemctl is-enabled refapp-beat.service").strip() == "enabled"
    finally:
        back = smship("provision", ENV, "-o", "json", check=True)
        remote(lab, "lab1", "systemctl start refapp-beat.service")
    assert back.statuses() == {"lab1": ["changed"], "lab2": ["ok"], "lab3": ["changed"]}, back
    assert remote(lab, "lab3", "test -e /etc/systemd/system/refapp-beat.service || echo absent").strip() == "absent"
    assert remote(lab, "lab1", "systemctl is-active refapp-beat.service").strip() == "active"


def test_a_changed_db_password_is_set_on_the_role_and_the_app_keeps_its_database(lab, smship, deployed, tmp_path):
    original = Path(lab.secrets).read_text()
    old = next(line.partition("=")[2] for line in original.splitlines() if line.startswith("SM_DB_PASSWORD="))
    new = "changed-" + old[::-1]
    secrets = tmp_path / "secrets.env"
    secrets.write_text(original.replace(f"SM_DB_PASSWORD={old}", f"SM_DB_PASSWORD={new}"))
    secrets.chmod(0o600)

    def use_copy(data: dict) -> None:
        lab_env(data)["secrets"] = {"backend": "file", "path": str(secrets)}

    def logs_in(password: str) -> bool:
        # From an app host, over the network, as the app does.
        script = (f"PGPASSWORD='{password}' psql -h {lab.address('lab1')} -U refapp -d refapp -tAc 'SELECT 1' "
                  "2>/dev/null || true")
        return remote(lab, "lab2", script).strip() == "1"

    def ready(host: str) -> str:
        return json.loads(remote(lab, host, "curl -sk -H 'Host: refapp.lab.test' https://127.0.0.1/health/ready"))["status"]

    try:
        run = smship("provision", ENV, inventory=write_inventory(lab, tmp_path / "project", use_copy), check=True)
        assert "postgres role refapp has the password SM_DB_PASSWORD" in run.output, run
        assert new not in run.output
        assert logs_in(new) and not logs_in(old)
        # The env files changed, so the app units restarted with the new password and reach Postgres.
        for host in WEB:
            assert ready(host) == "healthy"
    finally:
        smship("provision", ENV, inventory=lab.inventory, check=True)
    assert logs_in(old) and not logs_in(new)
    for host in WEB:
        assert ready(host) == "healthy"


def serving(lab, host: str) -> tuple[str, str]:
    """The serving web slot's service and its main PID."""
    unit = web_unit(lab, host)
    return unit, remote(lab, host, f"systemctl show -p MainPID --value {unit}").strip()


def environ(lab, host: str, pid: str) -> list[str]:
    return remote(lab, host, f"tr '\\0' '\\n' < /proc/{pid}/environ").splitlines()


def worker_pid(lab, host: str) -> tuple[str, str]:
    """The serving worker slot's service and its main PID."""
    unit = worker_unit(lab, host)
    return unit, remote(lab, host, f"systemctl show -p MainPID --value {unit}").strip()


def test_a_changed_env_value_restarts_the_web_hosts_through_their_slots_with_no_failed_request(
        lab, smship, deployed, tmp_path):
    def with_note(value: str, **health):
        def change(data: dict) -> None:
            lab_env(data).setdefault("env", {})["SM_PROVISION_NOTE"] = value
            if health:
                lab_env(data)["health"] = health
        return write_inventory(lab, tmp_path / value, change)

    try:
        before = {host: serving(lab, host) for host in WEB}
        workers = {host: worker_pid(lab, host) for host in WEB}
        with ExitStack() as stack:
            clients = steady_clients(lab, stack)
            time.sleep(1)
            run = smship("provision", ENV, "-o", "json", inventory=with_note("switched"), check=True)
        assert_no_failed_request(clients)
        print("provision's slot switch, the slowest request: " + ", ".join(
            f"{c.url} {max(c.latencies):.3f}s" for c in clients))
        # One web host at a time (the lab's web batch_size is 1), after the others.
        assert "then web batch 2/2: lab3" in run.output, run
        for host in WEB:
            unit, pid = serving(lab, host)
            assert unit != before[host][0], f"{host} restarted its serving slot in place"
            assert "SM_PROVISION_NOTE=switched" in environ(lab, host, pid)
            wait_state(lab, host, before[host][0], "inactive")
            assert remote(lab, host, f"systemctl is-enabled {unit}").strip() == "enabled"
            # The worker switched slots too, onto the release it ran: a new worker read the env file.
            unit, pid = worker_pid(lab, host)
            assert unit != workers[host][0], f"{host} restarted its serving worker slot in place"
            assert "SM_PROVISION_NOTE=switched" in environ(lab, host, pid)
            assert remote(lab, host, "readlink -f /srv/refapp/worker/live") == \
                remote(lab, host, f"readlink -f /srv/refapp/worker/slot-{workers[host][0].split('@')[1][0]}")
            wait_state(lab, host, workers[host][0], "inactive")
            assert remote(lab, host, f"systemctl is-enabled {unit}").strip() == "enabled"

        # A change the new uvicorn fails its gate on (here a ready endpoint it does not have): it is
        # stopped, the old one never stopped, and the next web batch is not touched.
        before = {host: serving(lab, host) for host in WEB}
        with ExitStack() as stack:
            clients = steady_clients(lab, stack)
            time.sleep(1)
            bad = smship("provision", ENV, inventory=with_note("gated", ready="/health/no-such-endpoint", timeout=5),
                         check=False)
        assert_no_failed_request(clients)
        assert "lab2" in bad.output and "failed its gate and was stopped" in bad.output, bad
        assert "the old process (slot %s) kept serving" % before["lab2"][0].split("@")[1][0] in bad.output, bad
        assert "not provisioned: lab2 failed first" in bad.output, bad
        for host in WEB:
            assert serving(lab, host) == before[host]
            idle = before[host][0].replace("@a.", "@x.").replace("@b.", "@a.").replace("@x.", "@b.")
            assert remote(lab, host, f"systemctl is-active {idle} || true").strip() == "inactive"
        assert "SM_PROVISION_NOTE=switched" in environ(lab, "lab2", before["lab2"][1])
    finally:
        # The lab's own inventory again: no SM_PROVISION_NOTE on any host or in any process.
        smship("provision", ENV, inventory=lab.inventory, check=True)
    for host in WEB:
        assert "SM_PROVISION_NOTE" not in remote(lab, host, "cat /srv/refapp/shared/env")
        assert not any(line.startswith("SM_PROVISION_NOTE=") for line in environ(lab, host, serving(lab, host)[1]))
        assert not any(line.startswith("SM_PROVISION_NOTE=") for line in environ(lab, host, worker_pid(lab, host)[1]))
