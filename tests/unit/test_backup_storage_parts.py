"""Pure parts of storage and backups: lifecycle rules, pgbackrest info rows, archiver health."""

from __future__ import annotations

from smship.steps.backupgate import archive_problem, restore_point_name
from dataclasses import replace

from smship.backup.info import backup_rows, summary, table
from smship.remote.client import ArchiveStatus, stanza_info
from smship.storage.bucket import LIFECYCLE_RULE_ID, lifecycle_rules

INFO = {
    "name": "shop", "status": {"code": 0, "message": "ok"},
    "archive": [{"id": "15-1", "min": "000000010000000000000003", "max": "00000001000000000000000A"}],
    "backup": [
        {"label": "20261129-190001F", "type": "full", "timestamp": {"start": 1795978801, "stop": 1795978807},
         "info": {"size": 31457280, "repository": {"size": 4194304}},
         "archive": {"start": "000000010000000000000004", "stop": "000000010000000000000004"}, "error": False},
    ],
}


def test_lifecycle_keeps_other_rules_and_replaces_its_own():
    theirs = {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 7}}
    stale = {"ID": LIFECYCLE_RULE_ID, "Status": "Enabled", "NoncurrentVersionExpiration": {"NoncurrentDays": 90}}
    rules = lifecycle_rules([theirs, stale], 30)
    assert rules[0] == theirs and len(rules) == 2
    assert rules[1]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}


def test_info_becomes_rows_and_a_table():
    rows = backup_rows(stanza_info(INFO))
    assert rows == [{"label": "20261129-190001F", "type": "full", "started": "2026-11-29 19:00:01Z",
                     "finished": "2026-11-29 19:00:07Z", "database_size": 31457280, "repository_size": 4194304,
                     "wal_start": "000000010000000000000004", "wal_stop": "000000010000000000000004", "error": False}]
    assert summary(stanza_info(INFO)) == {"stanza": "shop", "status": "ok", "status_code": 0, "archive": [
        {"id": "15-1", "min": "000000010000000000000003", "max": "00000001000000000000000A"}]}
    lines = table(stanza_info(INFO).backups)
    assert "30.0 MiB" in lines[1] and "4.0 MiB" in lines[1]
    assert backup_rows(stanza_info({"name": "shop", "status": {"code": 1, "message": "missing stanza path"}})) == []
    # A stanza pgBackRest does not know yet: info lists nothing at all.
    assert summary(stanza_info({})) == {"stanza": None, "status": None, "status_code": None, "archive": []}


def test_archiver_health_names_what_is_wrong():
    good = ArchiveStatus("on", failing=False, check_ok=True)
    assert archive_problem(good) is None
    assert "--restart-db" in archive_problem(replace(good, archive_mode="off"))
    failing = archive_problem(replace(good, failing=True, failed_count=3, last_failed_wal="0000000100000000000000AB"))
    assert "3 failure(s)" in failing and "0000000100000000000000AB" in failing
    assert "pgbackrest check failed: no S3" in archive_problem(replace(good, check_ok=False, check_output="no S3"))
    assert restore_point_name("20261129T190000Z-abc") == "smship-20261129T190000Z-abc"


def test_pgbackrest_errors_shrink_to_one_line():
    from smship.remote.pgagent import _condense

    dump = ("ERROR: [039]: HTTP request failed with 404 (NOT FOUND):\n       *** Path/Query ***:\n"
            "       GET /shop-backups/?list-type=2\n"
            "       <Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>\n")
    assert _condense(dump) == "ERROR: [039]: HTTP request failed with 404 (NOT FOUND); S3 error NoSuchBucket"
    assert _condense("one\ntwo\nthree\nfour\n") == "two / three / four"


def test_a_restore_stops_only_the_units_a_host_has_and_the_web_sockets():
    from smship.backup.commands import stop_command
    from smship.layout import Layout

    layout = Layout(app="shop", user="shop", root="/srv/shop")
    assert stop_command(layout, ["web", "worker"]).argv == (
        "systemctl", "stop", "shop-web@*.socket", "shop-web@*.service", "shop-worker@*.service")
    assert stop_command(layout, ["db", "lb", "beat"]).argv == ("systemctl", "stop", "shop-beat.service")


def test_the_storage_probe_is_read_from_its_last_line_or_from_why_it_could_not_run():
    from smship.ssh import Result
    from smship.storage.verify import RoundTrip, read_round_trip

    said = Result("web1", "S3 round trip as the app", 0, stdout='boto says hi\n{"ok": true, "message": "wrote"}\n')
    assert read_round_trip(said) == RoundTrip(True, "wrote")
    missing = Result("web1", "S3 round trip as the app", 1,
                     stderr="/srv/shop/current/.venv/bin/python: No such file or directory\n")
    assert read_round_trip(missing) == RoundTrip(
        False, "no live release to run the probe with (deploy first): "
               "/srv/shop/current/.venv/bin/python: No such file or directory")
    assert read_round_trip(Result("web1", "S3 round trip as the app", 0, stdout="not json\n")) == \
        RoundTrip(False, "not json")
