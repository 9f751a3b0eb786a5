"""``smship backup now|list|verify|restore``: the db host's pgBackRest, driven from here."""

from __future__ import annotations

import sys
import time

from smship.steps.dbhost import call_db, db_target, require_backup
from smship.backup.info import backup_rows, summary, table
from smship.command import Command, cmd
from smship.context import EnvContext, open_fleet, targets_of
from smship.steps.lock import environment_lock
from smship.steps.survey import survey
from smship.hostroles import app_hosts, app_units
from smship.steps.tiers import roll_tiers
from smship.errors import SmshipError
from smship.layout import Layout
from smship.remote import client as agent


def backup_now(ctx: EnvContext, kind: str = "full") -> bool:
    require_backup(ctx)
    if kind not in ("full", "diff", "incr"):
        raise SmshipError(f"--type {kind!r}: must be full, diff or incr")
    report, target = ctx.reporter, db_target(ctx)
    report.step(f"{kind} backup of Postgres on {target.name}")
    with open_fleet(ctx, ctx.env.hosts_with("db")[:1]) as fleet:
        began = time.monotonic()
        taken = call_db(ctx, fleet, target, agent.backup, kind=kind)
    report.host(target.name, "changed", f"backup {taken.label} ({taken.type})", time.monotonic() - began,
                label=taken.label)
    report.data["backup"] = {"label": taken.label, "type": taken.type}
    return True


def backup_list(ctx: EnvContext) -> bool:
    require_backup(ctx)
    report, target = ctx.reporter, db_target(ctx)
    with open_fleet(ctx, ctx.env.hosts_with("db")[:1]) as fleet:
        stanza = call_db(ctx, fleet, target, agent.info)
    report.data.update(backups=backup_rows(stanza), **summary(stanza))
    report.step(f"stanza {stanza.name}: {stanza.status_message}")
    for line in table(stanza.backups):
        report.info(line)
    for archive in stanza.archives:
        report.info(f"WAL archive {archive.id}: {archive.min} .. {archive.max}")
    report.host(target.name, "ok", f"{len(stanza.backups)} backup(s)")
    return True


def backup_verify(ctx: EnvContext) -> bool:
    require_backup(ctx)
    report, target = ctx.reporter, db_target(ctx)
    report.step(f"restoring the latest backup and all archived WAL into a scratch cluster on {target.name}")
    with open_fleet(ctx, ctx.env.hosts_with("db")[:1]) as fleet:
        began = time.monotonic()
        verified = call_db(ctx, fleet, target, agent.verify)
    rows = ", ".join(f"{name} {count}" for name, count in sorted(verified.rows.items())) or "no tables"
    report.host(target.name, "ok", f"backup {verified.backup} + WAL to {verified.last_segment}: "
                                   f"recovered to {verified.recovered_to or 'the backup itself'}",
                time.monotonic() - began, backup=verified.backup, recovered_to=verified.recovered_to,
                rows=verified.rows)
    report.info(f"rows in the restored copy: {rows}")
    report.info("the scratch cluster is dropped")
    report.data["verify"] = {"backup": verified.backup, "recovered_to": verified.recovered_to,
                             "rows": verified.rows, "last_segment": verified.last_segment}
    return True


def confirmed(ctx: EnvContext, yes: bool, what: str) -> bool:
    """--yes, or the environment's name typed at a terminal."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise SmshipError(f"{what}: refusing without confirmation; pass --yes (no terminal to ask on)")
    ctx.reporter.warn(what)
    answer = input(f"Type the environment name ({ctx.name}) to go ahead: ").strip()
    return answer == ctx.name


def stop_command(layout: Layout, roles: list[str]) -> Command:
    """Stop the app's units a host has (both web slots); the web sockets too, or a request would start uvicorn again."""
    units = app_units(layout, roles, socket=True, pattern=True)
    return cmd("systemctl", "stop", *units, sudo=True, description="stop the app's units")


def backup_restore(ctx: EnvContext, to: str | None, release: str | None, yes: bool) -> bool:
    require_backup(ctx)
    if bool(to) == bool(release):
        raise SmshipError("give exactly one of --to TIME and --release ID")
    point = f"smship-{release}" if release else None
    goal = f"the restore point {point}" if point else f"{to}"
    report, layout, db = ctx.reporter, ctx.layout, db_target(ctx)
    what = (f"restore the {ctx.name} database on {db.name} to {goal}: every change after it is lost, "
            "and the app is stopped meanwhile")
    if not confirmed(ctx, yes, what):
        report.error("not confirmed; nothing was done")
        return False
    apps = app_hosts(ctx.env.hosts)
    with open_fleet(ctx) as fleet:
        targets = {t.name: t for t in targets_of(ctx)}
        surveyed = survey(ctx, fleet, layout, [h.name for h in apps])
        running = [h for h in apps if surveyed[h.name].current]
        with environment_lock(fleet, [targets[h.name] for h in ctx.env.hosts], layout, f"restore {ctx.name}",
                              warn=report.warn) as held:
            report.step(f"stopping the app on {len(running)} host(s) so nothing writes meanwhile")
            roles = {h.name: list(h.roles) for h in running}
            stopped = fleet.map(lambda t: fleet.run(t, stop_command(layout, roles[t.name]), timeout=120),
                                [targets[h.name] for h in running])
            for name in stopped:
                result = stopped.succeeded.get(name)
                failed = result is None or not result.ok
                report.host(name, "failed" if failed else "changed",
                            str(stopped.failed[name]) if result is None else
                            (result.summary() if failed else "app units stopped"))
            if not stopped.ok or not all(r.ok for r in stopped.succeeded.values()):
                raise SmshipError("could not stop the app everywhere; the database was not touched")
            report.step(f"restoring Postgres on {db.name} to {goal}")
            began = time.monotonic()
            try:
                restored = call_db(ctx, fleet, db, agent.restore, point=point, time=to)
                report.host(db.name, "changed", f"restored; recovered to {restored.recovered_to}",
                            time.monotonic() - began, recovered_to=restored.recovered_to)
                report.data["restore"] = {"target": goal, "recovered_to": restored.recovered_to}
            finally:
                # The app comes back either way: on the restored database, or
                # on the untouched one if the restore failed before it began.
                failed = roll_tiers(ctx, fleet, targets, running, {h.name: surveyed[h.name].current for h in running},
                                    "restore", held)
            return failed is None
