"""``smship backup now|list|verify|restore ENV``: Postgres backups with pgBackRest."""

from __future__ import annotations

from invoke import Collection

from smship.context import EnvContext
from smship.tasks.base import env_command


@env_command(title="backup now", help={"type": "full (default), diff or incr."})
def now(ctx: EnvContext, type="full"):
    """Take a base backup of the db host's Postgres now (pgbackrest backup).

    The timer from the environment's `backup.schedule` takes full backups on
    its own; WAL is archived continuously in between.
    """
    from smship.backup.commands import backup_now

    return backup_now(ctx, type)


@env_command(title="backup list")
def list_(ctx: EnvContext):
    """List the backups in the repository and the archived WAL range (pgbackrest info).

    A table for people; with -o json, every backup's label, type, start,
    finish, sizes and WAL range.
    """
    from smship.backup.commands import backup_list

    return backup_list(ctx)


@env_command(title="backup verify")
def verify(ctx: EnvContext):
    """Prove the backups restore: latest backup plus all WAL into a scratch cluster on the db host.

    Closes the current WAL segment and waits for it to be archived, creates
    a throwaway cluster with pg_createcluster on a spare port, restores into
    it with archiving off, starts it, counts the rows of every table of the
    app's database, reports the point in time it recovered to, and drops
    the scratch cluster. The real cluster keeps running throughout.
    """
    from smship.backup.commands import backup_verify

    return backup_verify(ctx)


@env_command(title="backup restore", help={
    "to": "Point in time to recover to, e.g. '2026-11-29 18:05:00+00' (Postgres timestamp syntax).",
    "release": "Recover to the restore point a deploy of this release id created just before migrating.",
    "yes": "Do it without asking (otherwise type the environment name at the prompt).",
})
def restore(ctx: EnvContext, to=None, release=None, yes=False):
    """Point-in-time restore of the real database; everything written after the target is lost.

    Stops the app on every app host (web socket and service, workers, beat),
    closes and archives the current WAL segment, stops Postgres, restores
    with pgBackRest (--delta, --type=time or --type=name, promote at the
    target), starts Postgres, waits for recovery to finish, then brings the
    app back through the health-gated roll. Restore points come from
    deploys ('smship-<release id>'); the newest backup must be older than
    the target.
    """
    from smship.backup.commands import backup_restore

    return backup_restore(ctx, to, release, yes)


ns = Collection("backup")
ns.add_task(now, name="now")
ns.add_task(list_, name="list")
ns.add_task(verify, name="verify")
ns.add_task(restore, name="restore")
