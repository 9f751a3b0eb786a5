"""``smship rollback``: code only, never the database.

Migrations are expand/contract, so the previous release must tolerate the
newer schema; smship asks the target release's alembic (when the app's
migration is alembic's) whether it knows the database's current revision and
says so plainly.  The answer changes nothing (the code goes back either way),
so it is asked while the rollback takes the lock and rolls: the alembic
import it costs is not waited for.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor

from smship.context import EnvContext, counted_fleet, open_fleet, select_hosts, targets_of
from smship.steps.lock import environment_lock
from smship.steps.migrate import current_revision_command, uses_alembic
from smship.steps.record import record
from smship.steps.tiers import roll_tiers
from smship.steps.survey import HostSurvey, survey
from smship.errors import SmshipError
from smship.layout import Layout
from smship.hostroles import app_hosts


def previous_release(host: HostSurvey) -> str | None:
    """The release that was live here before the live one was deployed.

    Releases on disk are no guide: one may never have gone live (its
    migration failed, its health gate reverted it).  The host's activation
    log is: the live release's last activation from an older release says
    what it replaced.  Activations from a newer release (a rollback, a
    halted deploy putting it back) are passed over, so rolling back again
    goes further back instead of undoing the rollback.
    """
    if host.activations is None or host.current is None:
        return None
    went_live = {release for release, _ in host.activations}
    for release, previous in reversed(host.activations):
        if release == host.current and previous in went_live and previous < release:
            return previous
    return None


def choose_targets(hosts: dict[str, HostSurvey], to: str | None) -> dict[str, str]:
    chosen, problems = {}, []
    for name, host in hosts.items():
        target = to or previous_release(host)
        if target is None and host.activations is None:
            problems.append(f"{name}: no record of which releases went live here (deployed by an older smship; "
                            f"the next deploy starts one): name the release with --to")
        elif target is None:
            problems.append(f"{name}: the activation log names no release live here before {host.current}")
        elif target not in host.complete and to is None:
            problems.append(f"{name}: {target}, live here before {host.current}, is no longer on this host; "
                            f"name another with --to (has: {', '.join(host.complete) or 'none'})")
        elif target not in host.complete:
            problems.append(f"{name}: release {target} is not on this host (has: {', '.join(host.complete) or 'none'})")
        else:
            chosen[name] = target
    if problems:
        raise SmshipError("cannot roll back: " + "; ".join(problems))
    return chosen


def schema_report(ctx: EnvContext, fleet, target, layout: Layout, release: str) -> str:
    if not uses_alembic(ctx.app):
        # Only alembic can say whether a release knows the database's revision.
        what = "no migration" if ctx.app.migrate is None else f"the migration '{' '.join(ctx.app.migrate.command)}'"
        return (f"the app declares {what}, not alembic: the schemas are not compared; release {release}'s code "
                "must tolerate the database as it is (expand/contract)")
    result = fleet.run(target, current_revision_command(ctx.app, layout, release), timeout=120)
    # alembic logs to stderr and prints the revision alone on stdout.
    revision = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    if result.ok:
        if not revision:
            return f"the database has no alembic revision yet; release {release} can run on it"
        return f"release {release} knows the database's revision {revision}: safe to run its code"
    text = (result.stderr or result.stdout).strip()
    if "Can't locate revision" in text:
        return (f"release {release} does NOT know the database's current revision: its code must tolerate "
                "the newer schema (expand/contract); no migration will be run")
    return f"could not compare schemas: {text.splitlines()[-1] if text else result.summary()}"


def rollback(ctx: EnvContext, *, to: str | None = None, check: bool = False, limit: str | None = None) -> bool:
    layout, started = ctx.layout, time.time()
    chosen = app_hosts(select_hosts(ctx, limit))
    with counted_fleet(ctx) as fleet:
        return _rollback(ctx, fleet, layout, chosen, to, check, started)


def _rollback(ctx: EnvContext, fleet, layout: Layout, chosen: list, to: str | None, check: bool,
              started: float) -> bool:
    report = ctx.reporter
    targets = {t.name: t for t in targets_of(ctx)}
    with report.phase("preflight"):
        surveyed = survey(ctx, fleet, layout, [h.name for h in chosen])
    release_for = choose_targets({h.name: surveyed[h.name] for h in chosen}, to)
    probe = next((h for h in chosen if "web" in h.roles), chosen[0])

    def schema() -> str:
        try:
            return "schema: " + schema_report(ctx, fleet, targets[probe.name], layout, release_for[probe.name])
        except Exception as exc:    # the answer is advice: its failure is said, and stops nothing
            return f"schema: could not compare schemas: {exc}"

    if check:
        report.info(schema())
        for host in chosen:
            report.host(host.name, "ok", f"would switch {surveyed[host.name].current} -> {release_for[host.name]}")
        return True
    with ThreadPoolExecutor(1) as pool:
        asked = pool.submit(schema)
        asked.add_done_callback(lambda answer: report.info(answer.result()))
        return _switch_back(ctx, fleet, layout, chosen, targets, release_for, started, asked, vouched=to is None)


def _switch_back(ctx: EnvContext, fleet, layout: Layout, chosen: list, targets: dict, release_for: dict[str, str],
                 started: float, schema: Future, vouched: bool = False) -> bool:
    """``vouched``: each host goes back to the release live there just before (not one named with --to),
    which has served already: its workers start with the first web batch even when
    ``worker.after_first_web_batch`` keeps a new release's behind it."""
    report = ctx.reporter
    with environment_lock(fleet, [targets[h.name] for h in ctx.env.hosts], layout, f"rollback {ctx.name}",
                          warn=report.warn) as held:
        outcome = {"release": ",".join(sorted(set(release_for.values()))), "hosts": [h.name for h in chosen],
                   "rollback": True}
        with report.phase("roll"):
            failed = roll_tiers(ctx, fleet, targets, chosen, release_for, "rollback", held, vouched=vouched)
        schema.result()              # said before the rollback's outcome
        if failed:
            return record(ctx, fleet, targets, layout, outcome, f"failed: {failed}", started, held=held)
        return record(ctx, fleet, targets, layout, outcome, "ok", started, held=held)


def releases(ctx: EnvContext) -> bool:
    layout = ctx.layout
    app_names = [h.name for h in app_hosts(ctx.env.hosts)]
    with open_fleet(ctx, [h for h in ctx.env.hosts if h.name in app_names]) as fleet:
        surveyed = survey(ctx, fleet, layout, app_names, restarts=False)
    rows = {}
    for name, host in surveyed.items():
        rows[name] = [{"id": r, "live": r == host.current, "complete": r in host.complete} for r in host.releases]
        for r in reversed(host.releases):
            mark = "* live" if r == host.current else ("" if r in host.complete else "incomplete")
            ctx.reporter.info(f"{name:<12} {r} {mark}")
    ctx.reporter.data["releases"] = rows
    return True
