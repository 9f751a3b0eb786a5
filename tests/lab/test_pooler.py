"""PgBouncer in front of Postgres (db.pooler): a fleet whose pools outgrow max_connections runs through it.

The pools are the framework's own (10 + 20 per process), which the lab's 11
processes cannot have from Postgres' 97 connections: the budget check fails
and proposes the pooler with numbers. With the pooler the check passes, the
reference app serves through PgBouncer while a release deploys under steady
clients, its migration runs straight against Postgres, and a new
SM_DB_PASSWORD reaches PgBouncer's auth file on provision. The module leaves
the fleet as it found it (no pooler, the lab's own password).
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml

from labkit import (ENV, assert_no_failed_request, lab_env, psql, remote, run_smship, steady_clients,
                    write_inventory)

pytestmark = pytest.mark.lab

FRAMEWORK_POOLS = {"SM_DB_POOL_SIZE": "10", "SM_DB_MAX_OVERFLOW": "20"}
APP_HOSTS = ("lab2", "lab3")

# Over TCP straight to Postgres, inet_server_port() is Postgres' port; through
# PgBouncer, which reaches Postgres over its socket, it would be NULL.
WHERE_MIGRATED = '''\
"""Record which port the migration's connection reached."""
from alembic import op

revision = "0003_where_migrated"
down_revision = "0002_uploads_beat_ticks"


def upgrade():
    op.execute("CREATE TABLE where_migrated AS SELECT inet_server_port() AS port")


def downgrade():
    op.execute("DROP TABLE where_migrated")
'''


def pooled(data: dict, secrets: Path | None = None) -> None:
    env = lab_env(data)
    env["env"].update(FRAMEWORK_POOLS)
    env["db"] = {"pooler": {"tool": "pgbouncer", "pool_size": 20}}
    if secrets is not None:
        env["secrets"]["path"] = str(secrets)


def check_verdicts(lab, inventory: Path) -> tuple[int, dict]:
    run = run_smship("check", ENV, "-o", "json", "--skip-check", "admin,tls", inventory=inventory)
    return run.returncode, {c["name"]: c for c in json.loads(run.stdout)["checks"]}


def through_pgbouncer(lab, password: str) -> str:
    """``SELECT current_user`` through PgBouncer's TCP port on lab1 (the password on stdin); psql's output."""
    proc = lab.ssh("lab1", ["sh", "-c", 'IFS= read -r p; PGPASSWORD="$p" PGCONNECT_TIMEOUT=5 psql -X -tA '
                                        '-h 127.0.0.1 -p 6432 -U refapp -c "SELECT current_user" refapp 2>&1'],
                   input=f"{password}\n".encode())
    return proc.stdout.decode().strip()


def lab_password(lab) -> str:
    return next(line.split("=", 1)[1] for line in lab.secrets.read_text().splitlines()
                if line.startswith("SM_DB_PASSWORD="))


def pool_line(lab) -> dict[str, str]:
    """PgBouncer's SHOW POOLS row of the app's database, read on its admin console (peer, as postgres)."""
    out = remote(lab, "lab1", "runuser -u postgres -- psql -X -A -F '|' -h /var/run/postgresql -p 6432 "
                              "-U postgres -c 'SHOW POOLS' pgbouncer")
    header, *rows = out.splitlines()
    names = header.split("|")
    return next(dict(zip(names, row.split("|"))) for row in rows if row.startswith("refapp|"))


@pytest.fixture(scope="module")
def restore(lab, deployed):
    """Whatever the tests did, the fleet goes back to the lab's own inventory (and the database to its head)."""
    yield
    run_smship("provision", ENV, inventory=lab.inventory, check=True)
    psql(lab, "DROP TABLE IF EXISTS where_migrated; UPDATE alembic_version SET version_num = '0002_uploads_beat_ticks'")
    run_smship("deploy", ENV, inventory=lab.inventory, check=True)


def test_pools_that_outgrow_postgres_are_told_the_pooler_with_numbers(lab, restore, tmp_path):
    code, verdicts = check_verdicts(lab, write_inventory(lab, tmp_path, lambda d: lab_env(d)["env"].update(FRAMEWORK_POOLS)))
    budget = verdicts["connection-budget"]
    assert code == 1 and budget["status"] == "fail", budget
    assert "450 connections at most" in budget["reason"] and "for a limit of 97" in budget["reason"], budget
    assert "db.pooler: {pool_size: 87, max_client_conn: 1000}" in budget["fix"], budget


def test_through_the_pooler_the_app_serves_and_deploys_while_migrations_go_straight_to_postgres(
        lab, restore, variants):
    inventory = variants.inventory(files={"host/migrations/versions/0003_where_migrated.py": WHERE_MIGRATED},
                                   message="where migrated")
    data = yaml.safe_load(inventory.read_text())
    pooled(data)
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))

    run_smship("provision", ENV, inventory=inventory, check=True)
    assert remote(lab, "lab1", "systemctl is-active pgbouncer").strip() == "active"
    # The pooler's auth file: root's, readable by PgBouncer's user only, a verifier and never the password.
    stat = remote(lab, "lab1", "stat -c '%U:%G %a' /etc/pgbouncer/userlist.txt").strip()
    assert stat == "root:postgres 640", stat
    assert lab_password(lab) not in remote(lab, "lab1", "cat /etc/pgbouncer/userlist.txt")

    with ExitStack() as stack:
        clients = steady_clients(lab, stack)
        time.sleep(1)
        run_smship("deploy", ENV, inventory=inventory, check=True)
    assert_no_failed_request(clients)

    code, verdicts = check_verdicts(lab, inventory)
    budget = verdicts["connection-budget"]
    assert code == 0 and budget["status"] == "pass", [v for v in verdicts.values() if v["status"] != "pass"]
    assert budget["reason"].startswith(
        "450 client connections at most (lab1 1x30 + lab2 4x30 + lab3 4x30 + new web slots (batch of 1) 2x30 "
        "+ new worker slots (2 at once) 4x30) for PgBouncer's max_client_conn 1000; its pool of 20 server "
        "connections for a limit of 97"), budget
    assert verdicts["firewall"]["status"] == "pass" and "lab1:6432" in verdicts["firewall"]["reason"], verdicts["firewall"]

    # The app's processes reach the database only through PgBouncer ...
    for host in APP_HOSTS:
        env_file = remote(lab, host, "cat /srv/refapp/shared/env")
        assert f"@{lab.address('lab1')}:6432/refapp" in env_file, host
        ready = json.loads(remote(lab, host, "curl -sk -H 'Host: refapp.lab.test' https://127.0.0.1/health/ready"))
        assert ready["status"] == "healthy" and ready["checks"]["database"]["status"] == "healthy", ready
    pool = pool_line(lab)
    assert pool["pool_mode"] == "transaction" and int(pool["cl_active"]) + int(pool["cl_waiting"]) >= 2, pool
    clients_seen = remote(lab, "lab1", "runuser -u postgres -- psql -X -tA -h /var/run/postgresql -p 6432 -U postgres "
                                       "-c 'SHOW CLIENTS' pgbouncer")
    for host in APP_HOSTS:
        assert f"|{lab.address(host)}|" in clients_seen, (host, clients_seen)
    # ... which reaches Postgres over its socket: no app host holds a TCP connection to Postgres.
    tcp = psql(lab, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'refapp' AND client_addr IS NOT NULL")
    assert tcp == "0", tcp
    # The migration did not go through the pooler: its connection reached Postgres' own port.
    assert psql(lab, "SELECT version_num FROM alembic_version") == "0003_where_migrated"
    assert psql(lab, "SELECT port FROM where_migrated") == "5432"


def test_a_new_db_password_reaches_pgbouncer_on_provision(lab, restore, tmp_path):
    lines, old = lab.secrets.read_text().splitlines(), lab_password(lab)
    new = "rotated-" + old[::-1][:24]
    rotated = tmp_path / "secrets.env"
    rotated.write_text("\n".join(f"SM_DB_PASSWORD={new}" if line.startswith("SM_DB_PASSWORD=") else line
                                 for line in lines) + "\n")
    rotated.chmod(0o600)
    inventory = write_inventory(lab, tmp_path / "project", lambda d: pooled(d, rotated))
    assert through_pgbouncer(lab, old) == "refapp"

    run_smship("provision", ENV, inventory=inventory, check=True)
    assert through_pgbouncer(lab, new) == "refapp"
    refused = through_pgbouncer(lab, old)
    assert "password authentication failed" in refused or "SASL authentication failed" in refused, refused
    # The app hosts' processes were restarted on the new URL: still healthy through PgBouncer.
    for host in APP_HOSTS:
        deadline = time.monotonic() + 60
        while True:
            ready = json.loads(remote(lab, host, "curl -sk -H 'Host: refapp.lab.test' https://127.0.0.1/health/ready"))
            if ready["status"] == "healthy" or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert ready["status"] == "healthy", (host, ready)


def test_taking_the_pooler_out_stops_pgbouncer_and_removes_its_auth_file(lab, restore):
    assert remote(lab, "lab1", "systemctl is-active pgbouncer").strip() == "active"
    run_smship("provision", ENV, inventory=lab.inventory, check=True)
    # Stopped and disabled, the verifier gone; the app is back on Postgres' own port.
    state = remote(lab, "lab1", "systemctl is-active pgbouncer; systemctl is-enabled pgbouncer; "
                                "ls /etc/pgbouncer/userlist.txt /etc/systemd/system/pgbouncer.service.d/smship.conf "
                                "/var/lib/smship/refapp-pooler-password.fingerprint 2>&1 | grep -c 'No such file'; true")
    assert state.split() == ["inactive", "disabled", "3"], state
    for host in APP_HOSTS:
        assert f"@{lab.address('lab1')}:5432/refapp" in remote(lab, host, "cat /srv/refapp/shared/env"), host
    again = run_smship("provision", ENV, "-o", "json", inventory=lab.inventory, check=True)
    assert all(statuses == ["ok"] for statuses in again.statuses().values()), again
