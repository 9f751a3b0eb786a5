"""``smship deploy``: preflight (hosts, then the checklist of ``smship check``), build, ship, migrate once, roll, record.

The order is the safety argument: nothing on a host changes until every
host answered and the lock is held; no unit restarts until the release is
complete on every host, its env file holds the inventory's settings (the
migration and the restarted units read them) and the database is migrated; a batch that fails its
health gate is switched back and stops the roll, so hosts not yet reached
keep serving the old release.  A build whose content is live already on every
chosen host (and env files the inventory leaves alone) is a no-op, recorded as one.
"""

from __future__ import annotations

import time
from pathlib import Path

from smship.ahead import Ahead
from smship.checklist.run import INVENTORY_SKIP, ChecksAhead, preflight, skipped_checks
from smship.context import EnvContext, targets_of
from smship.steps.envfile import refresh_settings, settings_files
from smship.steps.lock import LockAhead, LockHeld
from smship.steps.migrate import release_steps, run_release_steps
from smship.steps.record import NOOP, record
from smship.steps.ship import install, transfer, without_room
from smship.steps.tiers import TiersAhead, roll_tiers
from smship.steps.survey import survey
from smship.steps.unchanged import already_live, worth_building_first
from smship.errors import SmshipError
from smship.hostos import require_release_fits, wheel_target
from smship.release.source import commit_of
from smship.layout import Layout
from smship.hostroles import app_hosts, is_app_host


def require_built_for(release, env_name: str, domain: str) -> None:
    """A front end built with one environment's domain in it is refused in another."""
    built_for = (release.manifest.get("frontend") or {}).get("domain")
    if built_for is not None and built_for != domain:
        raise SmshipError(f"release {release.id}: its front end was built for {built_for}, not {env_name}'s "
                          f"domain {domain}; build it with 'smship build --env {env_name}'")


def unchanged(ctx: EnvContext, fleet, targets: dict, layout: Layout, outcome: dict, live: list[str],
              built: str, started: float, checked: bool = True, held=None) -> bool:
    """Nothing to deploy: say which release is live, and leave an audit line that says so."""
    ctx.reporter.data["noop"] = True
    ctx.reporter.info(f"already live: release {', '.join(live)} on {len(outcome['hosts'])} host(s) has the "
                      f"content of {built}; nothing shipped or restarted (--force deploys anyway)")
    if not checked:
        ctx.reporter.info(f"the checks were not run, as nothing changes: 'smship check {ctx.name}' runs them")
    record(ctx, fleet, targets, layout, {**outcome, "release": ", ".join(live), "built": built, "noop": True},
           NOOP, started, held=held)
    return True


def obtain_release(ctx: EnvContext, release_path: str | None, ref: str, dirty: bool, target, report=None):
    """The release to ship, built for ``target`` (the app hosts' interpreter) or checked against it;
    its lines go to ``report`` (default: the command's reporter)."""
    from smship.release import build_release, cache_dir, load_release

    report = report or ctx.reporter
    if release_path:
        report.step(f"using the prebuilt release {release_path}")
        release = load_release(Path(release_path))
        require_release_fits(release, target)
        require_built_for(release, ctx.name, ctx.env.domain)
        return release
    report.step(f"building a release of {ctx.app.source} ({'working tree' if dirty else ref}) "
                f"for CPython {target.python_full_version}")
    return build_release(ctx.app.source, ref=ref, dirty=dirty, work_dir=cache_dir() / "releases",
                         progress=report.info, target=target, contract=ctx.app, domain=ctx.env.domain)


def name_release(ctx: EnvContext, release) -> None:
    ctx.reporter.info(f"release {release.id}")
    ctx.reporter.data["release"] = {"id": release.id, "path": str(release.path), "wheels": str(release.wheels_path)}


def release_to_ship(ctx: EnvContext, release_path: str | None, ref: str, dirty: bool, target):
    """:func:`obtain_release`, timed as the build phase and named in the report."""
    with ctx.reporter.phase("build"):
        release = obtain_release(ctx, release_path, ref, dirty, target)
    name_release(ctx, release)
    return release


class HeldLines:
    """A reporter's step/info lines kept to be said later, in order."""

    def __init__(self):
        self.lines: list[tuple[str, str]] = []

    def step(self, title: str) -> None:
        self.lines.append(("step", title))

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def say(self, reporter) -> None:
        for kind, text in self.lines:
            getattr(reporter, kind)(text)


class BuildAhead:
    """The release built (it needs no host) while the checklist asks the hosts; its lines are said, and
    its error raised, when it is taken. Ctrl-C leaves it behind (its build tools have the same Ctrl-C)."""

    def __init__(self, ctx: EnvContext, release_path: str | None, ref: str, dirty: bool, target):
        self.ctx, self.held = ctx, HeldLines()
        self._work = Ahead(lambda: obtain_release(ctx, release_path, ref, dirty, target, report=self.held),
                           "smship-build")

    def abandon(self) -> None:
        """The checklist failed: the build still ends before smship does, so no build tool is left
        writing into the cache behind the user's back."""
        if self._work.running():
            self.ctx.reporter.info("waiting for the release build under way to end")
        self._work.wait()

    def take(self):
        """The release, once built (waiting for it; Ctrl-C stops the wait)."""
        self._work.wait()
        self.held.say(self.ctx.reporter)
        phases = self.ctx.reporter.data.setdefault("phases", {})
        phases["build"] = round(phases.get("build", 0) + self._work.seconds, 3)
        release = self._work.take()
        name_release(self.ctx, release)
        return release


def deploy(ctx: EnvContext, fleet, chosen: list, *, ahead=None, release_path: str | None = None, ref: str = "HEAD",
           dirty: bool = False, skip_checks: list[str] = (), force: bool = False) -> bool:
    """Deploy to ``chosen`` (see :func:`smship.deploy.chosen.deploy_hosts`) through ``fleet``, the whole
    environment's; ``ahead``: its agents, begun while this module loaded."""
    return _deploy(ctx, fleet, ctx.layout, chosen, release_path, ref, dirty, list(skip_checks), force, ahead=ahead)


def _deploy(ctx: EnvContext, fleet, layout: Layout, chosen: list, release_path: str | None, ref: str,
            dirty: bool, skip_checks: list[str], force: bool = False, ahead=None) -> bool:
    # The checklist asks the hosts while the survey does (it needs nothing the survey says). A deploy
    # that stops, or finds nothing to do, before the checklist waits for it and drops what it found.
    with ChecksAhead(ctx, fleet, skip_checks) as checks:
        return _deploy_checked(ctx, fleet, layout, chosen, release_path, ref, dirty, skip_checks, force, checks,
                               ahead)


def _deploy_checked(ctx: EnvContext, fleet, layout: Layout, chosen: list, release_path: str | None, ref: str,
                    dirty: bool, skip_checks: list[str], force: bool, checks: ChecksAhead, ahead=None) -> bool:
    from smship.release import venv_commands, venv_dir

    report, started = ctx.reporter, time.time()
    targets = {t.name: t for t in targets_of(ctx)}
    with report.phase("preflight"):
        hosts = survey(ctx, fleet, layout, [h.name for h in chosen], content=True, ahead=ahead)
        # Every app host, not only --limit's: the fleet must stay on one Python.
        target = wheel_target(ctx.app, {h.name: hosts[h.name].interpreter for h in ctx.env.hosts
                                        if is_app_host(h)})
        # Rendered before anything changes: a setting the inventory cannot give stops the deploy here.
        settings = {h.name: settings_files(ctx, h, ctx.secrets) for h in chosen}
    chosen_survey = {h.name: hosts[h.name] for h in chosen}
    release, compared = None, False
    if not force and (release_path or worth_building_first(chosen_survey, None if dirty else
                                                            commit_of(ctx.app.source, ref))):
        # The live commit again (or a prebuilt release, free to compare): when its content is live,
        # nothing will change, and neither the checks nor the lock are needed.
        release = release_to_ship(ctx, release_path, ref, dirty, target)
        live = already_live(ctx, fleet, targets, release, chosen_survey, settings, locked=False)
        if live is not None:
            return unchanged(ctx, fleet, targets, layout, {"release": release.id, "hosts": list(chosen_survey)},
                             live, release.id, started, checked=False)
        compared = True  # under the lock, only the deploy is left
    building = None if release is not None else BuildAhead(ctx, release_path, ref, dirty, target)
    # rsync's connections log in, and the lock is taken, while the checklist asks the hosts (a failed check
    # leaves the connections unused and gives the lock back).
    fleet.prepare_rsync([targets[h.name] for h in chosen])
    locking = LockAhead(fleet, [targets[h.name] for h in ctx.env.hosts], layout, f"deploy {ctx.name}",
                        warn=report.warn)
    try:
        with report.phase("preflight"):
            try:
                # This deploy rewrites the chosen hosts' env files: the budget is judged on what they will hold.
                preflight(ctx, fleet, skip_checks, rewritten={h.name for h in chosen}, ahead=checks)
            except Exception:
                if building is not None:
                    building.abandon()
                raise
        release = release or building.take()
    except BaseException as failure:
        refused = locking.abandon()
        if isinstance(failure, Exception) and isinstance(refused, LockHeld):
            # Another deploy is changing the fleet: what the checks saw of it is no reason of this one's.
            raise refused from None
        raise
    with locking as held:
        outcome = {"release": release.id, "hosts": [h.name for h in chosen]}
        off = skipped_checks(ctx, skip_checks)
        if off:
            # Overriding a check is a decision someone made: the audit log says who, and where
            # (the command line, or the inventory's checks.skip).
            outcome["skipped_checks"] = list(off)
            inventory = [name for name, why in off.items() if why == INVENTORY_SKIP]
            if inventory:
                outcome["skipped_by_inventory"] = inventory
        live = None if force or compared else already_live(ctx, fleet, targets, release, chosen_survey, settings)
        report.data["noop"] = False
        if live is not None:
            return unchanged(ctx, fleet, targets, layout, outcome, live, release.id, started, held=held)
        roles = {h.name: h.roles for h in chosen}
        app_targets = [targets[h.name] for h in chosen]

        def each_host(work, describe, title):
            """``work(target)`` on every chosen host in parallel; False when one failed (each is reported)."""
            def one(target):
                began = time.monotonic()
                try:
                    done = work(target)
                except Exception as exc:
                    report.host(target.name, "failed", str(exc), time.monotonic() - began)
                    raise
                message, details = describe(done)
                report.host(target.name, "changed", message, time.monotonic() - began, **details)
            return fleet.map(one, app_targets,
                             waiting=lambda names, seconds: report.waiting(title, names, seconds)).ok

        short = without_room(release, {h.name: hosts[h.name].free_bytes for h in chosen})
        for name, problem in short.items():
            report.host(name, "failed", f"{layout.root}/releases: {problem}; nothing was shipped")
        if short:
            return record(ctx, fleet, targets, layout, outcome, "failed: disk space", started, held=held)

        report.step(f"shipping {release.id} to {len(chosen)} host(s)")
        front_url = ctx.app.frontend.url if ctx.app.frontend is not None else None
        with report.phase("ship"):
            shipped = each_host(
                lambda t: transfer(fleet, t, layout, release, hosts[t.name].current,
                                   front_url if "web" in roles[t.name] else None),
                lambda s: (f"{s.bytes_sent} bytes, {s.files} files", {"bytes_sent": s.bytes_sent}), "shipping")
        if not shipped:
            return record(ctx, fleet, targets, layout, outcome, "failed: ship", started, held=held)

        report.step(f"installing {release.id} on {len(chosen)} host(s)")
        commands = venv_commands(layout.root, release.deps_id, ctx.app.interpreter, layout.user)
        target_venv = venv_dir(layout.root, release.deps_id)
        with report.phase("install"):
            installed = each_host(lambda t: install(fleet, t, layout, release, commands, target_venv),
                                  lambda _: ("virtualenv ready, release complete", {}), "installing")
        if not installed:
            return record(ctx, fleet, targets, layout, outcome, "failed: install", started, held=held)

        with report.phase("settings"):
            if not refresh_settings(ctx, fleet, targets, settings):
                return record(ctx, fleet, targets, layout, outcome, "failed: settings", started, held=held)

        steps = release_steps(ctx.app, layout, release.id)
        if ctx.env.backup is not None and steps:
            from smship.steps.backupgate import before_migration
            with report.phase("backup gate"):
                if not before_migration(ctx, fleet, release.id):
                    return record(ctx, fleet, targets, layout, outcome, "failed: WAL archiving", started, held=held)

        migrator = next((h for h in chosen if "web" in h.roles), chosen[0])
        # The roll's first agents start up while the migration runs; they change nothing until asked.
        ahead = TiersAhead(ctx, fleet, targets, chosen)
        with report.phase("migrate"):
            try:
                failed_step = run_release_steps(ctx, fleet, targets[migrator.name], steps)
            except BaseException:
                ahead.cancel()
                raise
        if failed_step:
            ahead.cancel()
            return record(ctx, fleet, targets, layout, outcome, f"failed: {failed_step}", started, held=held)

        with report.phase("roll"):
            failed = roll_tiers(ctx, fleet, targets, chosen, {h.name: release.id for h in chosen}, "deploy", held,
                                ahead=ahead)
        with report.phase("record"):
            if failed:
                return record(ctx, fleet, targets, layout, outcome, f"failed: {failed}", started, held=held)
            replaced = sorted({hosts[h.name].current for h in chosen if hosts[h.name].current})
            return record(ctx, fleet, targets, layout, outcome, "ok", started, prune=True, protect=replaced,
                          held=held)
