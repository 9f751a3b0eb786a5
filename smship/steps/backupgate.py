"""Before a deploy migrates: WAL archiving must be healthy, and a named restore point marks the moment.

A bad data migration is then undone with
``smship backup restore ENV --release <id>``, which recovers the database
to just before that release's migration.
"""

from __future__ import annotations

import time

from smship.steps.dbhost import call_db, db_target
from smship.context import EnvContext
from smship.errors import SmshipError
from smship.remote import client as agent
from smship.remote.client import ArchiveStatus


def restore_point_name(release_id: str) -> str:
    return f"smship-{release_id}"


def archive_problem(status: ArchiveStatus) -> str | None:
    """Why archiving is not healthy, in words; None when it is."""
    if status.archive_mode != "on":
        return (f"archive_mode is {status.archive_mode}: Postgres has not restarted since backups were "
                "configured (smship provision ENV --restart-db)")
    if status.failing:
        return (f"the archiver is failing: {status.failed_count} failure(s), last {status.last_failed_wal} "
                f"at {status.last_failed_time} (last success: {status.last_archived_wal or 'none'})")
    if not status.check_ok:
        return f"pgbackrest check failed: {status.check_output}"
    return None


def before_migration(ctx: EnvContext, fleet, release_id: str) -> bool:
    """Check archiving and create the release's restore point; False (reported) when archiving is broken."""
    report, target = ctx.reporter, db_target(ctx)
    report.step(f"backups: checking WAL archiving on {target.name} before migrating")
    began = time.monotonic()
    try:
        answer = call_db(ctx, fleet, target, agent.archive_status)
    except SmshipError as exc:
        answer = ArchiveStatus("on", check_ok=False, check_output=str(exc))
    problem = archive_problem(answer)
    if problem:
        report.host(target.name, "failed", f"{problem}; not migrating without a way back", time.monotonic() - began)
        return False
    point = call_db(ctx, fleet, target, agent.restore_point, name=restore_point_name(release_id))
    report.host(target.name, "changed", f"archiving healthy; restore point {point.name} at {point.lsn}",
                time.monotonic() - began, restore_point=point.name)
    report.data["restore_point"] = {"name": point.name, "lsn": point.lsn}
    return True
