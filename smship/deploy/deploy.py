"""``smship deploy``: preflight (hosts, then the checklist of ``smship check``), build, ship, migrate once, roll, record.

The order is the safety argument: nothing on a host changes until every
host answered and the lock is held; no unit restarts until the release is
complete on every host and the database is migrated; a batch that fails its
health gate is switched back and stops the roll, so hosts not yet reached
keep serving the old release.
"""

from __future__ import annotations

import time
from pathlib import Path

from smship.check.run import preflight
from smship.context import EnvContext, open_fleet, targets_of
from smship.deploy.keycheck import require_strong_key
from smship.deploy.lock import environment_lock
from smship.deploy.migrate import upgrade_command
from smship.deploy.record import record
from smship.deploy.ship import ship_host
from smship.deploy.tiers import roll_tiers
from smship.deploy.survey import survey
from smship.errors import SmshipError
from smship.layout import Layout
from smship.provision.variables import APP_ROLES


def obtain_release(ctx: EnvContext, release_path: str | None, ref: str, dirty: bool):
    from smship.release import build_release, cache_dir, load_release

    if release_path:
        ctx.reporter.step(f"using the prebuilt release {release_path}")
        return load_release(Path(release_path))
    ctx.reporter.step(f"building a release of {ctx.app.source} ({'working tree' if dirty else ref})")
    return build_release(ctx.app.source, ref=ref, dirty=dirty, work_dir=cache_dir() / "releases",
                         progress=ctx.reporter.info)


def deploy(ctx: EnvContext, *, release_path: str | None = None, ref: str = "HEAD", dirty: bool = False,
           limit: str | None = None, skip_checks: list[str] = ()) -> bool:
    from smship.context import select_hosts
    from smship.release import venv_commands, venv_dir

    report, layout, started = ctx.reporter, Layout.of(ctx.app, ctx.env), time.time()
    chosen = [h for h in select_hosts(ctx, limit) if set(h.roles) & set(APP_ROLES)]
    if not chosen:
        raise SmshipError(f"no host of {ctx.name} runs the app{' within --limit ' + limit if limit else ''}")
    require_strong_key(ctx.name, ctx.env)
    with open_fleet(ctx) as fleet:
        targets = {t.name: t for t in targets_of(ctx)}
        hosts = survey(ctx, fleet, layout, [h.name for h in chosen])
        preflight(ctx, fleet, list(skip_checks))
        with environment_lock(fleet, [targets[h.name] for h in ctx.env.hosts], layout, f"deploy {ctx.name}",
                              warn=report.warn):
            release = obtain_release(ctx, release_path, ref, dirty)
            report.info(f"release {release.id}")
            outcome = {"release": release.id, "hosts": [h.name for h in chosen]}
            if skip_checks:
                # Overriding a check is a decision someone made: the audit log says who.
                outcome["skipped_checks"] = list(skip_checks)

            report.step(f"shipping {release.id} to {len(chosen)} host(s)")
            commands = venv_commands(layout.root, release.deps_id, ctx.app.python, layout.user)
            target_venv = venv_dir(layout.root, release.deps_id)

            def ship(target):
                began = time.monotonic()
                try:
                    shipped = ship_host(fleet, target, layout, release, hosts[target.name].current, commands,
                                        target_venv, static="web" in roles[target.name])
                except Exception as exc:
                    report.host(target.name, "failed", str(exc), time.monotonic() - began)
                    raise
                report.host(target.name, "changed", f"{shipped.bytes_sent} bytes, {shipped.files} files",
                            time.monotonic() - began, bytes_sent=shipped.bytes_sent)
                return shipped

            roles = {h.name: h.roles for h in chosen}
            shipped = fleet.map(ship, [targets[h.name] for h in chosen])
            if any(isinstance(v, BaseException) for v in shipped.values()):
                return record(ctx, fleet, targets, layout, outcome, "failed: ship", started)

            if ctx.env.backup is not None:
                from smship.backup.gate import before_migration
                if not before_migration(ctx, fleet, release.id):
                    return record(ctx, fleet, targets, layout, outcome, "failed: WAL archiving", started)

            migrator = next((h for h in chosen if "web" in h.roles), chosen[0])
            report.step(f"migrating the database once, from {migrator.name}")
            began = time.monotonic()
            result = fleet.run(targets[migrator.name], upgrade_command(layout, release.id), timeout=1800)
            if not result.ok:
                report.host(migrator.name, "failed", "alembic upgrade head failed; no host was restarted",
                            time.monotonic() - began)
                for line in (result.stderr or result.stdout).strip().splitlines()[-15:]:
                    report.info(line)
                return record(ctx, fleet, targets, layout, outcome, "failed: migration", started)
            report.host(migrator.name, "changed", "alembic upgrade head", time.monotonic() - began)

            failed = roll_tiers(ctx, fleet, targets, chosen, {h.name: release.id for h in chosen}, "deploy")
            if failed:
                return record(ctx, fleet, targets, layout, outcome, f"failed: {failed}", started)
            return record(ctx, fleet, targets, layout, outcome, "ok", started, prune=True)
