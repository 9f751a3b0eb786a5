"""Each typed answer of the agents, parsed from the JSON they write (no host, no root).

The shapes here are the ones :mod:`smship.remote.agent` and
:mod:`smship.remote.pgagent` write; an answer missing a field fails with an
error naming the host and the op, never with a bare KeyError.
"""

from __future__ import annotations

import pytest

from smship.steps.backupgate import archive_problem

from smship.errors import SmshipError
from smship.remote import client as agent

CLUSTER = {"version": 16, "name": "main", "port": 5432, "database": "shop"}

HOST_CHECKS = {
    "current": "r2", "manifest": {"alembic_heads": ["0002"]}, "frontend": True,
    "env": {"values": {"SM_ENVIRONMENT": "production"}, "database_scheme": "postgresql+asyncpg",
            "secret_key_weakness": None},
    "units": {"shop-web.service": {"state": "active", "sub": "running", "loaded": "loaded",
                                   "exec_start": "{ path=/srv/shop/current/.venv/bin/uvicorn --proxy-headers }",
                                   "cmdline": ["uvicorn", "--proxy-headers"], "sm010": None}},
    "beat": "inactive", "nginx": "server { }", "certificate": None, "drained": False,
    "os": {"id": "debian", "version_id": "12", "name": "Debian GNU/Linux 12 (bookworm)", "python": "3.11.2"},
}


def test_checkfacts_reads_every_part_of_the_hosts_answer():
    found = agent.checkfacts({}).read("web1", HOST_CHECKS)
    assert (found.current, found.alembic_heads, found.frontend, found.beat, found.drained) == \
        ("r2", ["0002"], True, "inactive", False)
    assert found.env == agent.EnvFileChecks({"SM_ENVIRONMENT": "production"}, "postgresql+asyncpg", None)
    assert found.env_values() == {"SM_ENVIRONMENT": "production"}
    unit = found.units["shop-web.service"]
    assert unit.cmdline == ["uvicorn", "--proxy-headers"] and "--proxy-headers" in unit.exec_start
    assert (found.nginx, found.nginx_error) == ("server { }", None)
    assert found.os == agent.OSRelease("debian", "12", "Debian GNU/Linux 12 (bookworm)", "3.11.2")


def test_checkfacts_without_a_release_env_file_or_nginx():
    bare = agent.checkfacts({}).read("db1", {**HOST_CHECKS, "current": None, "manifest": None, "frontend": None,
                                             "env": None, "units": {}, "nginx": {"error": "nginx: not found"},
                                             "os": None})
    assert (bare.current, bare.alembic_heads, bare.env, bare.env_values(), bare.os) == (None, None, None, None, None)
    assert (bare.nginx, bare.nginx_error) == (None, "nginx: not found")
    unreadable = agent.checkfacts({}).read("web1", {**HOST_CHECKS, "env": {"error": "/srv/shop/shared/env: denied"}})
    assert unreadable.env.error == "/srv/shop/shared/env: denied" and unreadable.env_values() is None


def test_an_answer_missing_a_field_names_the_host_and_the_op():
    broken = {k: v for k, v in HOST_CHECKS.items() if k != "beat"}
    with pytest.raises(SmshipError, match=r"^web1: the smship agent's checkfacts answer has no field 'beat'"):
        agent.checkfacts({}).read("web1", broken)
    with pytest.raises(SmshipError, match=r"^web1: the smship agent's checkfacts answer has a field of the wrong"):
        agent.checkfacts({}).read("web1", {**HOST_CHECKS, "units": ["shop-web.service"]})
    with pytest.raises(SmshipError, match=r"^db1: the smship agent's verify answer has no field 'rows'"):
        agent.verify("shop", CLUSTER).read("db1", {"ok": True, "backup": "F", "recovered_to": "",
                                                   "last_segment": "0001", "seconds": 1.0})


def test_archive_status_and_a_restore_point():
    status = agent.archive_status("shop", CLUSTER).read("db1", {
        "ok": True, "archive_mode": "on", "wal_level": "replica", "archived_count": 4,
        "last_archived_wal": "000000010000000000000004", "last_archived_time": "2026-12-01 10:00:00+00",
        "failed_count": 0, "last_failed_wal": None, "last_failed_time": None, "failing": False,
        "check_ok": True, "check_output": ""})
    assert status == agent.ArchiveStatus("on", False, 0, None, None, "000000010000000000000004", True, "")
    # ok: false is the program's verdict on archiving, read for the gate to explain; an error is a refusal.
    off = agent.archive_status("shop", CLUSTER).read("db1", {
        "ok": False, "archive_mode": "off", "wal_level": "replica", "archived_count": 0, "last_archived_wal": None,
        "last_archived_time": None, "failed_count": 0, "last_failed_wal": None, "last_failed_time": None,
        "failing": False, "check_ok": False, "check_output": "archive_mode must be enabled"})
    assert "smship provision ENV --restart-db" in archive_problem(off)
    with pytest.raises(SmshipError, match="^db1: psql: could not connect$"):
        agent.archive_status("shop", CLUSTER).read("db1", {"ok": False, "error": "psql: could not connect"})
    point = agent.restore_point("shop", CLUSTER, "smship-r1").read(
        "db1", {"ok": True, "name": "smship-r1", "lsn": "0/3000090"})
    assert point == agent.RestorePoint("smship-r1", "0/3000090")


def test_backup_verify_and_restore_answers():
    taken = agent.backup("shop", CLUSTER, "full").read(
        "db1", {"ok": True, "seconds": 3.5, "label": "20261201-100000F", "type": "full"})
    assert taken == agent.BackupTaken("20261201-100000F", "full", 3.5)
    verified = agent.verify("shop", CLUSTER).read("db1", {
        "ok": True, "backup": "20261201-100000F", "recovered_to": "2026-12-01 10:05:00+00",
        "rows": {"users": 2}, "last_segment": "000000010000000000000006", "port": 54390, "seconds": 9.1})
    assert verified == agent.VerifyResult("20261201-100000F", "2026-12-01 10:05:00+00", {"users": 2},
                                          "000000010000000000000006", 9.1)
    restored = agent.restore("shop", CLUSTER, point="smship-r1").read(
        "db1", {"ok": True, "recovered_to": "2026-12-01 10:04:00+00"})
    assert restored == agent.RestoreResult("2026-12-01 10:04:00+00")
    with pytest.raises(SmshipError, match="^db1: pgbackrest restore failed"):
        agent.restore("shop", CLUSTER, time="x").read("db1", {"ok": False, "error": "pgbackrest restore failed"})


def test_info_reads_pgbackrests_own_json():
    found = agent.info("shop", CLUSTER).read("db1", {"ok": True, "info": {
        "name": "shop", "status": {"code": 0, "message": "ok"},
        "archive": [{"id": "16-1", "min": "000000010000000000000001", "max": "000000010000000000000006"}],
        "backup": [{"label": "20261201-100000F", "type": "full", "timestamp": {"start": 10, "stop": 20},
                    "info": {"size": 100, "repository": {"size": 40}},
                    "archive": {"start": "000000010000000000000002", "stop": "000000010000000000000002"},
                    "error": False}]}})
    assert (found.name, found.status_message, found.status_code) == ("shop", "ok", 0)
    assert found.archives == [agent.WalArchive("16-1", "000000010000000000000001", "000000010000000000000006")]
    assert found.backups == [agent.BackupEntry("20261201-100000F", "full", 10, 20, 100, 40,
                                               "000000010000000000000002", "000000010000000000000002", False)]
    with pytest.raises(SmshipError, match="^db1: the smship agent's info answer has no field 'info'"):
        agent.info("shop", CLUSTER).read("db1", {"ok": True})
