"""Settings that wait for a Postgres restart (archive_mode, wal_level) after provisioning.

Restarting Postgres drops every connection, so provisioning never does it on
its own for these: it names what is pending and does it with --restart-db.
"""

from __future__ import annotations

from smship.command import Command, cmd
from smship.hostroles import POSTGRES_CLUSTER_UNIT

# The running values, not pg_settings.pending_restart: a reload is
# asynchronous, so right after one that flag may not be set yet.
PENDING_SQL = ("SELECT concat_ws(',', CASE WHEN current_setting('archive_mode') = 'off' THEN 'archive_mode' END, "
               "CASE WHEN current_setting('wal_level') = 'minimal' THEN 'wal_level' END)")


def pending_restart_command(port: int) -> Command:
    return cmd("runuser", "-u", "postgres", "--", "psql", "-X", "-At", "-p", port, "-d", "postgres", "-c",
               PENDING_SQL, sudo=True, description="settings pending a Postgres restart")


def restart_command(version: int) -> Command:
    unit = POSTGRES_CLUSTER_UNIT % version
    return cmd("systemctl", "restart", unit, sudo=True, description=f"restart {unit}")


def settle_restart(ctx, fleet, target, restart_db: bool, postgres_major: int) -> str | None:
    """Restart Postgres on ``target`` if settings wait for it and ``restart_db``; what was done or is owed."""
    from smship.errors import SmshipError

    db = ctx.env.db
    result = fleet.run(target, pending_restart_command(db.port), timeout=60)
    if not result.ok:
        raise SmshipError(result.summary())
    pending = result.stdout.strip()
    if not pending:
        return None
    if not restart_db:
        return (f"{target.name}: Postgres needs a restart for {pending} to take effect (WAL archiving waits "
                f"for it); run 'smship provision {ctx.name} --restart-db' when a short outage is acceptable")
    restarted = fleet.run(target, restart_command(postgres_major), timeout=300)
    if not restarted.ok:
        raise SmshipError(restarted.summary())
    return f"{target.name}: restarted Postgres for {pending}"
