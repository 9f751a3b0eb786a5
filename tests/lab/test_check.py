"""`smship check` on a deployed 3-host lab: each check is made to fail, then to pass again.

The lab: lab1 = [db, lb, beat], lab2 and lab3 = [web, worker].  Every test
puts back what it broke (in ``finally``), so the fleet stays deployed and
healthy for the next one.  No secret value may ever appear in check's output.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from labkit import ENV, lab_env, remote, wait_state, web_unit, write_inventory

pytestmark = pytest.mark.lab

ENV_FILE = "/srv/refapp/shared/env"
ADMIN = "ops@lab.test"


def secret_values(lab) -> list[str]:
    return [line.partition("=")[2] for line in Path(lab.secrets).read_text().splitlines()
            if "=" in line and not line.startswith("#")]


def run_check(lab, smship, *argv: str, inventory: Path | None = None):
    run = smship("check", ENV, "-o", "json", *argv, inventory=inventory)
    assert run.returncode in (0, 1), run
    for value in secret_values(lab):
        assert value not in run.output, "a secret value was printed"
    return run


def verdicts(run) -> dict[str, dict]:
    return {v["name"]: v for v in run.document["checks"]}


def status_of(lab, smship, name: str, *argv: str, inventory: Path | None = None) -> dict:
    run = run_check(lab, smship, *argv, inventory=inventory)
    verdict = verdicts(run)[name]
    # The exit code follows the verdicts.
    assert (run.returncode == 1) == any(v["status"] == "fail" for v in run.document["checks"]), run
    return verdict


def wait_for_status(lab, smship, name: str, wanted: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        verdict = status_of(lab, smship, name)
        if verdict["status"] == wanted or time.monotonic() > deadline:
            return verdict
        time.sleep(2)


def live_release(lab, host: str) -> str:
    return remote(lab, host, "basename \"$(readlink /srv/refapp/current)\"").strip()


def psql(lab, sql: str) -> str:
    return remote(lab, "lab1", f"cd / && sudo -u postgres psql -d refapp -Atc \"{sql}\"")


@contextmanager
def env_line(lab, host: str, key: str, value: str):
    """One line of a host's env file set to ``value`` for the block; the file restored after."""
    remote(lab, host, f"cp -p {ENV_FILE} /root/env.before-test")
    try:
        remote(lab, host, f"sed -i 's|^{key}=.*|{key}={value}|' {ENV_FILE} && grep -q '^{key}={value}$' {ENV_FILE}")
        yield
    finally:
        remote(lab, host, f"cp -p /root/env.before-test {ENV_FILE}")


def wait_active(lab, host: str, unit: str, seconds: float = 60) -> None:
    wait_state(lab, host, unit, "active", seconds)


def test_a_deployed_lab_passes_every_check_once_an_admin_exists(lab, smship, deployed):
    first = verdicts(run_check(lab, smship))
    assert first["admin"]["status"] == "fail", first["admin"]
    assert "no admin user exists" in first["admin"]["reason"]
    assert "bootstrap command" in first["admin"]["fix"] and "skip: [admin]" in first["admin"]["fix"]
    password = "lab-admin-password-1"
    try:
        # The password goes on stdin, as create-admin wants it.
        remote(lab, "lab2", f"echo {password} | systemd-run --quiet --wait --pipe --collect -p User=refapp "
                            f"-p EnvironmentFile={ENV_FILE} -p WorkingDirectory=/srv/refapp/current "
                            f"/srv/refapp/current/.venv/bin/python -m refapp create-admin --email {ADMIN}")
        run = run_check(lab, smship)
        found = verdicts(run)
        assert run.returncode == 0, run
        assert found["admin"]["status"] == "pass", found["admin"]
        # The lab's certificate is self-signed: a warning, the only one.
        assert {n: v["status"] for n, v in found.items() if v["status"] != "pass"} == {"tls": "warn"}, found
        assert "self-signed" in found["tls"]["fix"]
        assert "0002_uploads_beat_ticks" in found["migrations"]["reason"]
        assert "exactly one beat is active (lab1)" in found["beat"]["reason"]
        assert len(run.stdout.strip().splitlines()) == 1  # one JSON document; progress went to stderr
        text = smship("check", ENV)
        assert text.returncode == 0 and "admin              pass" in text.stderr, text
    finally:
        psql(lab, f"delete from users where email = '{ADMIN}'")
    assert status_of(lab, smship, "admin")["status"] == "fail"


@pytest.mark.parametrize("name,key,bad", [
    ("environment", "SM_ENVIRONMENT", "testing"),
    ("log-format", "SM_LOG_FORMAT", "text"),
])
def test_a_setting_fails_from_the_inventory_and_from_a_host(lab, smship, deployed, tmp_path, name, key, bad):
    def set_bad(data: dict) -> None:
        lab_env(data)["env"][key] = bad

    from_inventory = status_of(lab, smship, name, inventory=write_inventory(lab, tmp_path, set_bad))
    assert from_inventory["status"] == "fail", from_inventory
    assert f"{key} is '{bad}' (inventory)" in from_inventory["reason"]
    assert "smship provision lab" in from_inventory["fix"]

    with env_line(lab, "lab3", key, bad):
        on_host = status_of(lab, smship, name)
    assert on_host["status"] == "fail", on_host
    assert f"{key} is '{bad}' (lab3)" in on_host["reason"]
    assert status_of(lab, smship, name)["status"] == "pass"


def test_a_weak_secret_key_fails_without_being_shown(lab, smship, deployed, tmp_path):
    weak = tmp_path / "weak.env"
    text = Path(lab.secrets).read_text()
    weak.write_text("".join("SM_SECRET_KEY=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
                            if line.startswith("SM_SECRET_KEY=") else line + "\n" for line in text.splitlines()))
    weak.chmod(0o600)

    def use_weak(data: dict) -> None:
        lab_env(data)["secrets"] = {"backend": "file", "path": str(weak)}

    from_inventory = status_of(lab, smship, "secret-key", inventory=write_inventory(lab, tmp_path / "p", use_weak))
    assert from_inventory["status"] == "fail", from_inventory
    assert "SM_SECRET_KEY is weak" in from_inventory["reason"] and "(inventory)" in from_inventory["reason"]

    with env_line(lab, "lab2", "SM_SECRET_KEY", "change-me"):
        on_host = status_of(lab, smship, "secret-key")
    assert on_host["status"] == "fail", on_host
    assert "SM_SECRET_KEY is a known default value (lab2)" in on_host["reason"]
    assert "change-me" not in str(on_host)
    assert status_of(lab, smship, "secret-key")["status"] == "pass"


def test_a_database_url_that_is_not_asyncpg_postgres_fails(lab, smship, deployed):
    with env_line(lab, "lab2", "SM_DATABASE_URL", "sqlite+aiosqlite:///srv/refapp/shared/app.db"):
        verdict = status_of(lab, smship, "database-url")
    assert verdict["status"] == "fail", verdict
    assert "sqlite+aiosqlite://, not postgresql+asyncpg:// (lab2)" in verdict["reason"]
    assert status_of(lab, smship, "database-url")["status"] == "pass"


def test_a_database_behind_the_live_head_fails_migrations_and_sm010_then_passes(lab, smship, deployed):
    head = psql(lab, "select version_num from alembic_version").strip()
    assert head == "0002_uploads_beat_ticks"
    try:
        psql(lab, "update alembic_version set version_num = '0001_users'")
        behind = status_of(lab, smship, "migrations")
        assert behind["status"] == "fail", behind
        assert "at 0001_users, behind the head 0002_uploads_beat_ticks" in behind["reason"]
        # A web unit started now meets the app's own check and logs SM010.
        unit = web_unit(lab, "lab3")
        remote(lab, "lab3", f"systemctl restart {unit} || true")
        found = wait_for_status(lab, smship, "sm010", "fail")
        assert found["status"] == "fail", found
        assert f"lab3 {unit}" in found["reason"] and "SM010" in found["reason"]

        psql(lab, "update alembic_version set version_num = 'ffff_from_a_newer_release'")
        ahead = status_of(lab, smship, "migrations")
        assert ahead["status"] == "warn", ahead
        assert "does not know" in ahead["reason"]
    finally:
        psql(lab, f"update alembic_version set version_num = '{head}'")
        remote(lab, "lab3", f"systemctl reset-failed {unit}; systemctl restart {unit}")
        wait_active(lab, "lab3", unit)
    assert status_of(lab, smship, "migrations")["status"] == "pass"
    assert wait_for_status(lab, smship, "sm010", "pass")["status"] == "pass"


def test_a_stopped_postgres_fails_the_database_checks(lab, smship, deployed):
    try:
        remote(lab, "lab1", "systemctl stop postgresql.service")
        found = verdicts(run_check(lab, smship))
        for name in ("migrations", "admin"):
            assert found[name]["status"] == "fail", found[name]
        assert "cannot read the database from lab2" in found["migrations"]["reason"]
        # Judged on the inventory's db.max_connections instead, and said so.
        assert found["connection-budget"]["status"] == "warn", found["connection-budget"]
        assert "cannot read max_connections" in found["connection-budget"]["reason"]
    finally:
        remote(lab, "lab1", "systemctl start postgresql.service && "
                            "timeout 60 sh -c 'until pg_isready -q; do sleep 0.5; done'")
    found = verdicts(run_check(lab, smship))
    for name in ("migrations", "connection-budget"):
        assert found[name]["status"] == "pass", found[name]


@contextmanager
def without_packages(lab, hosts: list[str], packages: list[str]):
    """The live release's virtualenv on ``hosts`` without ``packages`` for the block (an app that never shipped them)."""
    moves = []
    try:
        for host in hosts:
            site = remote(lab, host, "ls -d /srv/refapp/current/.venv/lib/python3*/site-packages").strip()
            for package in packages:
                remote(lab, host, f"mkdir -p /root/away && mv {site}/{package} /root/away/{package}")
                moves.append((host, site, package))
        yield
    finally:
        for host, site, package in reversed(moves):
            remote(lab, host, f"mv /root/away/{package} {site}/{package}")


def test_the_database_checks_read_through_whichever_driver_the_release_ships(lab, smship, deployed):
    app_hosts = ["lab2", "lab3"]
    with without_packages(lab, app_hosts, ["psycopg"]):
        found = verdicts(run_check(lab, smship))
        for name in ("migrations", "admin", "connection-budget"):
            assert "No module named" not in found[name]["reason"], found[name]
        assert found["migrations"]["status"] == "pass", found["migrations"]
        assert "read from Postgres" in found["connection-budget"]["reason"], found["connection-budget"]
        with without_packages(lab, app_hosts, ["asyncpg"]):
            found = verdicts(run_check(lab, smship))
    assert found["migrations"]["status"] == "fail", found["migrations"]
    assert "no Postgres driver" in found["migrations"]["reason"], found["migrations"]
    assert "Postgres runs" not in found["migrations"]["fix"], found["migrations"]
    assert status_of(lab, smship, "migrations")["status"] == "pass"


def test_a_missing_frontend_manifest_fails(lab, smship, deployed):
    manifest = f"/srv/refapp/releases/{live_release(lab, 'lab2')}/static/dist/.vite/manifest.json"
    try:
        remote(lab, "lab2", f"mv {manifest} {manifest}.away")
        verdict = status_of(lab, smship, "frontend")
        assert verdict["status"] == "fail", verdict
        assert "missing from the live release on lab2" in verdict["reason"]
    finally:
        remote(lab, "lab2", f"mv {manifest}.away {manifest}")
    assert status_of(lab, smship, "frontend")["status"] == "pass"


def test_uvicorn_without_proxy_headers_and_nginx_without_forwarded_headers_fail(lab, smship, deployed):
    # A drop-in for the slots' template reaches both slots.
    dropin = "/etc/systemd/system/refapp-web@.service.d"
    site = "/etc/nginx/sites-available/refapp-lb.conf"
    unit = web_unit(lab, "lab3")
    exec_start = remote(lab, "lab3", f"systemctl show -p ExecStart --value {unit}")
    assert "--proxy-headers" in exec_start
    try:
        remote(lab, "lab3", f"mkdir -p {dropin} && printf '[Service]\\nExecStart=\\nExecStart=/srv/refapp/current/"
                            f".venv/bin/uvicorn main:app --fd 3\\n' > {dropin}/zz-test.conf && systemctl daemon-reload")
        remote(lab, "lab1", f"cp -p {site} /root/lb.before-test && sed -i '/X-Forwarded-Proto/d' {site}")
        verdict = status_of(lab, smship, "proxy-headers")
        assert verdict["status"] == "fail", verdict
        assert f"lab3: {unit} is not configured with --proxy-headers" in verdict["reason"]
        assert "lab1: nginx location / does not set X-Forwarded-Proto" in verdict["reason"]
        assert "lab2" not in verdict["reason"]
    finally:
        remote(lab, "lab3", f"rm -rf {dropin} && systemctl daemon-reload")
        remote(lab, "lab1", f"cp -p /root/lb.before-test {site}")
    assert status_of(lab, smship, "proxy-headers")["status"] == "pass"


def test_a_web_host_left_drained_warns_and_an_nginx_that_cannot_drain_fails(lab, smship, deployed):
    flag, site = "/var/www/refapp/draining", "/etc/nginx/sites-available/refapp.conf"
    assert status_of(lab, smship, "drain")["status"] == "pass"
    try:
        remote(lab, "lab3", f"touch {flag}")
        verdict = status_of(lab, smship, "drain")
        assert verdict["status"] == "warn" and verdict["reason"].startswith("lab3 drained"), verdict
        # An nginx site whose drain check looks at another file than the one smship creates.
        remote(lab, "lab2", f"cp -p {site} /root/site.before-test && sed -i 's#{flag}#/var/www/refapp/gone#' {site}")
        verdict = status_of(lab, smship, "drain")
        assert verdict["status"] == "fail", verdict
        assert verdict["reason"].startswith("lab2: nginx does not turn the lb's requests away"), verdict
        assert "smship provision lab" in verdict["fix"]
    finally:
        remote(lab, "lab3", f"rm -f {flag}")
        remote(lab, "lab2", f"test ! -e /root/site.before-test || mv /root/site.before-test {site}")
    assert status_of(lab, smship, "drain")["status"] == "pass"


def test_a_certificate_for_another_name_or_expiring_soon_fails_tls(lab, smship, deployed):
    expiring = status_of(lab, smship, "tls", "--cert-days", "1000")
    assert expiring["status"] == "fail", expiring
    assert "expires in" in expiring["reason"] and "at least 1000 wanted" in expiring["reason"]

    crt, key = "/etc/ssl/smship/refapp.crt", "/etc/ssl/smship/refapp.key"
    try:
        remote(lab, "lab2", f"cp -p {crt} /root/crt.before-test && cp -p {key} /root/key.before-test && "
                            f"openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=other.lab.test "
                            f"-addext subjectAltName=DNS:other.lab.test -keyout {key} -out {crt} 2>/dev/null && "
                            "systemctl reload nginx")
        verdict = status_of(lab, smship, "tls")
        assert verdict["status"] == "fail", verdict
        assert "lab2: the certificate is for other.lab.test, not refapp.lab.test" in verdict["reason"]
    finally:
        remote(lab, "lab2", f"cp -p /root/crt.before-test {crt} && cp -p /root/key.before-test {key} && "
                            "systemctl reload nginx")
    assert status_of(lab, smship, "tls")["status"] == "warn"  # self-signed: valid, only untrusted


def test_pools_too_large_for_max_connections_fail_the_budget_with_a_suggestion(lab, smship, deployed, tmp_path):
    def big_pools(data: dict) -> None:
        lab_env(data)["env"]["SM_DB_POOL_SIZE"] = "50"

    verdict = status_of(lab, smship, "connection-budget", inventory=write_inventory(lab, tmp_path, big_pools))
    assert verdict["status"] == "fail", verdict
    # 15 processes: lab1 beat 1, lab2 and lab3 2 uvicorn workers + 2 Celery processes each, the
    # 2 uvicorn workers of a batch's new web slot and the 2 + 2 Celery processes of the workers' new
    # slots, which run beside the serving ones during a roll.
    assert ("795 connections at most (lab1 1x53 + lab2 4x53 + lab3 4x53 + new web slots (batch of 1) 2x53 "
            "+ new worker slots (2 at once) 4x53) for a limit of 97") in verdict["reason"]
    assert "read from Postgres" in verdict["reason"]
    assert "SM_DB_POOL_SIZE: 1 and SM_DB_MAX_OVERFLOW: 4" in verdict["fix"]
    assert "db.pooler: {pool_size: 87, max_client_conn: 1000}" in verdict["fix"]
    passed = status_of(lab, smship, "connection-budget")
    assert passed["status"] == "pass" and "75 connections at most" in passed["reason"], passed


def test_a_second_beat_or_none_fails(lab, smship, deployed):
    try:
        # A second beat started by hand, under the unit's own name.
        remote(lab, "lab3", "systemd-run --quiet --unit=refapp-beat.service sleep 600")
        two = status_of(lab, smship, "beat")
        assert two["status"] == "fail", two
        assert "2 beats are active (lab1, lab3)" in two["reason"] and "on lab3" in two["fix"]
    finally:
        remote(lab, "lab3", "systemctl stop refapp-beat.service")
    assert status_of(lab, smship, "beat")["status"] == "pass"
    try:
        remote(lab, "lab1", "systemctl stop refapp-beat.service")
        none = status_of(lab, smship, "beat")
        assert none["status"] == "fail" and "no beat is active (expected on lab1)" in none["reason"], none
    finally:
        remote(lab, "lab1", "systemctl start refapp-beat.service")
    assert status_of(lab, smship, "beat")["status"] == "pass"


def test_an_unreachable_host_fails_and_skip_check_leaves_a_check_out(lab, smship, deployed):
    try:
        lab.partition("lab3")
        run = run_check(lab, smship, "--skip-check", "tls,admin")
        found = verdicts(run)
        assert run.returncode == 1
        assert found["hosts"]["status"] == "fail" and "lab3" in found["hosts"]["reason"], found["hosts"]
        assert found["tls"]["status"] == found["admin"]["status"] == "skip"
    finally:
        lab.heal("lab3")
        lab.wait_ssh("lab3")
    assert status_of(lab, smship, "hosts")["status"] == "pass"
    unknown = smship("check", ENV, "--skip-check", "nope")
    assert unknown.returncode != 0 and "no such check" in unknown.output


def test_deploy_runs_the_checks_first_and_skip_check_is_audited(lab, smship, deployed, tmp_path):
    def text_logs(data: dict) -> None:
        lab_env(data)["env"]["SM_LOG_FORMAT"] = "text"

    inventory = write_inventory(lab, tmp_path, text_logs)
    before = live_release(lab, "lab2")
    # --force: the live commit again with unchanged settings would be a no-op, which runs no check.
    refused = smship("deploy", ENV, "--force", inventory=inventory, check=False)
    assert "preflight failed, nothing was changed: check(s) log-format failed" in refused.output, refused
    assert "--skip-check log-format" in refused.output
    assert live_release(lab, "lab2") == before
    # Overridden, the deploy goes ahead and writes the inventory's settings, text logs too.
    try:
        forced = smship("deploy", ENV, "-o", "json", "--skip-check", "log-format", "--force", inventory=inventory,
                        check=True)
        assert forced.document["audit"]["skipped_checks"] == ["log-format"]
        audit = json.loads(remote(lab, "lab2", "tail -1 /srv/refapp/deploys.jsonl"))
        assert audit["skipped_checks"] == ["log-format"] and audit["result"] == "ok"
        assert {c["name"]: c["status"] for c in forced.document["checks"]}["log-format"] == "skip"
    finally:
        # The session's first release goes live again, on the lab's own settings, as the other lab tests expect.
        smship("rollback", ENV, "--to", before, check=True)
        smship("provision", ENV, check=True)
    assert live_release(lab, "lab2") == before
    assert "SM_LOG_FORMAT=json" in remote(lab, "lab2", "cat /srv/refapp/shared/env")
