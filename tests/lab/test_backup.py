"""Postgres backups with pgBackRest to a real S3-compatible server (moto behind nginx TLS).

The lab: lab1 = [db, lb, beat].  pgBackRest on lab1 reaches the server by
the DNS name on its certificate (pgBackRest checks DNS names, not IP
addresses), which the test maps to the bridge address in lab1's /etc/hosts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from labkit import ENV, lab_env, postgres_unit, remote, write_inventory
from s3kit import secrets_with_keys

pytestmark = pytest.mark.lab

BUCKET = "refapp-backups"
PROBE_TABLE = "backup_probe"


def psql(lab, sql: str) -> str:
    """``sql`` in the app's database on lab1, as postgres; its output (unaligned, tuples only)."""
    return remote(lab, "lab1", f"runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -d refapp -c \"{sql}\"")


def probe_rows(lab) -> list[str]:
    return psql(lab, f"SELECT note FROM {PROBE_TABLE} ORDER BY id").split()


@pytest.fixture(scope="module")
def backup_inventory(lab, deployed, s3_server, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("backup")
    secrets = secrets_with_keys(Path(lab.secrets), directory)
    s3_server.client().create_bucket(Bucket=BUCKET)

    def add_backup(data: dict) -> None:
        env = lab_env(data)
        env["secrets"] = {"backend": "file", "path": str(secrets)}
        env["backup"] = {"bucket": BUCKET, "endpoint_url": s3_server.endpoint_by_name,
                         "ca_file": str(s3_server.ca_file), "retention_full": 2, "schedule": "*-*-* 03:00:00"}
        env["health"] = {"timeout": 45}

    return write_inventory(lab, directory, add_backup)


@pytest.fixture(scope="module")
def archiving(lab, backup_inventory, smship):
    """Backups configured by provision, Postgres restarted for archive_mode, one full backup taken."""
    first = smship("provision", ENV, "--limit", "lab1", inventory=backup_inventory, check=True)
    second = smship("provision", ENV, "--limit", "lab1", "--restart-db", inventory=backup_inventory, check=True)
    psql(lab, f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (id serial PRIMARY KEY, note text NOT NULL)")
    began = time.monotonic()
    backup = smship("backup", "now", ENV, "-o", "json", inventory=backup_inventory, check=True)
    return first, second, backup, time.monotonic() - began


def test_provision_configures_archiving_and_restarts_postgres_only_when_asked(lab, archiving):
    first, second, _, _ = archiving
    assert "Postgres needs a restart for archive_mode" in first.output, first
    assert "--restart-db" in first.output
    assert "restarted Postgres for archive_mode" in second.output, second
    assert remote(lab, "lab1", "runuser -u postgres -- psql -X -At -c 'SHOW archive_mode'").strip() == "on"
    assert remote(lab, "lab1", "systemctl is-enabled refapp-backup.timer").strip() == "enabled"
    assert "OnCalendar=*-*-* 03:00:00" in remote(lab, "lab1", "cat /etc/systemd/system/refapp-backup.timer")
    assert remote(lab, "lab1", "stat -c '%U %a' /etc/pgbackrest/pgbackrest.conf").strip() == "postgres 640"


def test_backup_now_and_list(lab, archiving, backup_inventory, smship, s3_server):
    _, _, backup, seconds = archiving
    label = backup.document["backup"]["label"]
    listed = smship("backup", "list", ENV, "-o", "json", inventory=backup_inventory, check=True)
    assert label in [row["label"] for row in listed.document["backups"]], listed
    assert listed.document["status"] == "ok"
    assert label in listed.stderr                    # the table for people
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=BUCKET, Prefix="refapp/lab/backup/")
            .get("Contents", [])]
    assert any(label in key for key in keys), keys[:10]
    print(f"backup now: {seconds:.1f}s")


def test_the_timer_s_unit_takes_a_full_backup(lab, archiving, backup_inventory, smship):
    before = len(smship("backup", "list", ENV, "-o", "json", inventory=backup_inventory, check=True).document["backups"])
    remote(lab, "lab1", "systemctl start refapp-backup.service", timeout=300)   # what the timer starts
    backups = smship("backup", "list", ENV, "-o", "json", inventory=backup_inventory, check=True).document["backups"]
    assert len(backups) == before + 1 and backups[-1]["type"] == "full", backups


def test_backup_verify_restores_rows_written_after_the_base_backup(lab, archiving, backup_inventory, smship):
    psql(lab, f"INSERT INTO {PROBE_TABLE} (note) VALUES ('after-backup-1'), ('after-backup-2')")
    expected = len(probe_rows(lab))
    began = time.monotonic()
    run = smship("backup", "verify", ENV, "-o", "json", inventory=backup_inventory, check=True)
    verify = run.document["verify"]
    assert verify["rows"][PROBE_TABLE] == expected, run
    assert verify["recovered_to"], run
    assert "recovered to" in run.stderr
    # The scratch cluster is gone; the real one never stopped.
    assert "smship_verify" not in remote(lab, "lab1", "pg_lsclusters -h")
    assert remote(lab, "lab1", f"systemctl is-active {postgres_unit(lab)}").strip() == "active"
    print(f"backup verify: {time.monotonic() - began:.1f}s")


def test_restore_to_a_release_restore_point_drops_later_rows(lab, archiving, backup_inventory, smship):
    psql(lab, f"INSERT INTO {PROBE_TABLE} (note) VALUES ('before-release')")
    deploy = smship("deploy", ENV, "-o", "json", "--force", inventory=backup_inventory, check=True)  # migrates
    point = deploy.document["restore_point"]["name"]
    release = deploy.document["audit"]["release"]
    assert point == f"smship-{release}"
    psql(lab, f"INSERT INTO {PROBE_TABLE} (note) VALUES ('after-release')")
    assert "after-release" in probe_rows(lab)

    refused = smship("backup", "restore", ENV, "--release", release, inventory=backup_inventory, check=False)
    assert "pass --yes" in refused.output and "after-release" in probe_rows(lab)

    began = time.monotonic()
    run = smship("backup", "restore", ENV, "--release", release, "--yes", "-o", "json",
                 inventory=backup_inventory, check=True)
    rows = probe_rows(lab)
    assert "before-release" in rows and "after-release" not in rows, (rows, run)
    # The app came back through the health gate on the restored database.
    for host in ("lab2", "lab3"):
        ready = json.loads(remote(lab, host, "curl -sk -H 'Host: refapp.lab.test' https://127.0.0.1/health/ready"))
        assert ready["status"] == "healthy", ready
    print(f"backup restore: {time.monotonic() - began:.1f}s")


def test_a_deploy_refuses_to_migrate_when_archiving_is_broken(lab, archiving, backup_inventory, smship):
    # pgBackRest's configuration unreadable: every archive-push and check fails.
    remote(lab, "lab1", "chmod 000 /etc/pgbackrest/pgbackrest.conf")
    try:
        run = smship("deploy", ENV, "--force", inventory=backup_inventory, check=False)
        assert "not migrating without a way back" in run.output, run
        # The gate's own words for what is broken, not a bare refusal.
        assert "pgbackrest check failed: " in run.output or "the archiver is failing" in run.output, run
        assert "alembic upgrade head" not in run.output
    finally:
        remote(lab, "lab1", "chmod 640 /etc/pgbackrest/pgbackrest.conf")


def test_restore_to_a_point_in_time_drops_later_rows(lab, archiving, backup_inventory, smship):
    psql(lab, f"INSERT INTO {PROBE_TABLE} (note) VALUES ('before-time')")
    time.sleep(1.5)
    target = psql(lab, "SELECT now()::text").strip()
    time.sleep(1.5)
    psql(lab, f"INSERT INTO {PROBE_TABLE} (note) VALUES ('after-time')")
    smship("backup", "restore", ENV, "--to", target, "--yes", inventory=backup_inventory, check=True)
    rows = probe_rows(lab)
    assert "before-time" in rows and "after-time" not in rows, rows


def test_a_missing_backup_bucket_fails_provision_in_one_line(lab, archiving, backup_inventory, smship, tmp_path):
    import yaml

    data = yaml.safe_load(backup_inventory.read_text())
    lab_env(data)["backup"]["bucket"] = "refapp-no-such-backups"
    typo = tmp_path / "smship.yml"
    typo.write_text(yaml.safe_dump(data))
    try:
        run = smship("provision", ENV, "--limit", "lab1", inventory=typo, check=False)
        lines = [line for line in run.stderr.splitlines() if line.strip().startswith("lab1")]
        assert len(lines) == 1 and "failed" in lines[0], run
        assert "S3 error NoSuchBucket" in lines[0] and "<Error>" not in run.stderr, run
    finally:
        smship("provision", ENV, "--limit", "lab1", inventory=backup_inventory, check=True)
    assert "repo1-s3-bucket=refapp-backups" in remote(lab, "lab1", "cat /etc/pgbackrest/pgbackrest.conf")
