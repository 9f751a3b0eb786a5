"""``smship provision ENV``."""

from __future__ import annotations

from smship.context import EnvContext
from smship.tasks.base import env_command


@env_command(help={
    "check": "Change nothing; report what would change.",
    "diff": "Print the unified diff of every file that changes (secret files: only that they change).",
    "limit": "Only these hosts or roles, comma separated (for example web1,db).",
    "restart-db": "Restart Postgres if settings wait for it (archive_mode, wal_level after adding backups); "
                  "drops the app's connections for a few seconds.",
})
def provision(ctx: EnvContext, check=False, diff=False, limit=None, restart_db=False):
    """Install and configure every host's roles (web, worker, beat, db, lb).

    Idempotent: a host already in its desired state reports `ok` and nothing
    is restarted. Files are rendered from templates/ (a file of the same
    name in your project's templates/ wins), compared by hash, and replaced
    atomically; handlers (daemon-reload, nginx reload, unit restarts) run
    only when something they depend on changed. Postgres settings that
    need a restart (turning WAL archiving on) are named, and applied only
    with --restart-db.
    """
    from smship.context import fleet_begun, select_hosts

    hosts = select_hosts(ctx, limit)
    with fleet_begun(ctx, hosts) as (fleet, ahead):
        from smship.provision.provision import provision as run

        return run(ctx, fleet, hosts, ahead, check=check, diff=diff, restart_db=restart_db)
