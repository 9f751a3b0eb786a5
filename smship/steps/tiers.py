"""The app's tiers in the order every restart takes them: web, then workers and beat.

Deploy, rollback and secret rotation all restart the same way: the web hosts
in health-gated batches (drained from an lb), and only when every web batch
is healthy the Celery workers and the one beat, which have no health URL and
must stay up after their restart (until a moment after they log that they work).
"""

from __future__ import annotations

from smship.context import EnvContext
from smship.steps.roll import health_request, roll
from smship.hostroles import background_units, ready_lines
from smship.inventory import Host
from smship.ssh import Fleet, Target
from smship.steps.lock import HeldLock


def roll_tiers(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], hosts: list[Host],
               release_for: dict[str, str], verb: str, held: HeldLock) -> str | None:
    """Activate ``release_for[host]`` tier by tier under the lock ``held``; the failed phase's name, or None
    when all went well."""
    report, layout = ctx.reporter, ctx.layout
    web = [h for h in hosts if "web" in h.roles]
    if web:
        rolled = roll(ctx, fleet, targets, web, release_for, lambda name: [layout.web_service],
                      health_request(ctx, layout), ctx.env.web.batch_count(len(web)), f"{verb}: web", held,
                      web_slots=layout.web_slots())
        if not rolled.ok:
            untouched = [h.name for h in web if h.name not in rolled.done and h.name not in rolled.failed]
            report.error(f"{verb} halted: " + "; ".join(f"{n}: {r}" for n, r in rolled.failed.items()))
            if untouched:
                report.info(f"not restarted, still on their old release: {', '.join(untouched)}")
            return "web roll"
    roles = {h.name: list(h.roles) for h in hosts}
    background = [h for h in hosts if background_units(layout, roles[h.name])]
    if background:
        rolled = roll(ctx, fleet, targets, background, release_for,
                      lambda name: background_units(layout, roles[name]), None, len(background), f"{verb}: workers",
                      held, ready_for=lambda name: ready_lines(layout, roles[name], name))
        if not rolled.ok:
            report.error(f"{verb} halted: " + "; ".join(f"{n}: {r}" for n, r in rolled.failed.items()))
            return "workers"
    return None
