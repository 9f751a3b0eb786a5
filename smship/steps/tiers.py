"""The app's tiers as every restart takes them: web batches, with the workers and beat alongside.

Deploy, rollback and secret rotation all restart the same way. The web hosts
go in health-gated batches (drained from an lb). The Celery workers and the one
beat take the release all at once, beside the first web batch: they have no
health URL and must stay up after their restart (until a moment after they log
that they work), and that watch, seconds of Celery start-up, then costs no time
of its own. Neither tier waits for the other: each new process starts beside
the old one, which serves until its successor works. They run from a link of
their own (Layout.background_release), so a host's worker can move before its
web tier does.

If a web batch fails, the workers and beat that moved are put back on the
release they ran; if they fail (each host reverts itself), no further web batch
starts. Without web hosts they simply go on their own. ``worker.after_first_web_batch``
makes them wait until the first web batch is healthy (the release has shown it
starts and serves) unless the release has shown that already (``vouched``: a
rollback to the release live just before).
"""

from __future__ import annotations

from smship.context import EnvContext
from smship.hostroles import background_units, ready_lines
from smship.inventory import Host
from smship.remote import AgentsAhead
from smship.remote import client as agent
from smship.ssh import Fleet, Target
from smship.steps.alongside import Alongside
from smship.steps.lock import HeldLock
from smship.steps.roll import Activations, RollResult, batches, health_request, roll


class TiersAhead:
    """The agents of a roll's first web batch and of its workers' batch, begun while the release's steps
    (the migration) run: sudo, the interpreter and the agent's imports are then out of the roll's way.
    Taken by :func:`roll_tiers`, or cancelled (each agent then exits, having done nothing)."""

    def __init__(self, ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], hosts: list[Host]):
        web = [h for h in hosts if "web" in h.roles]
        first = batches(web, ctx.env.web.batch_count(len(web)))[0] if web else []
        background = [h for h in hosts if background_units(ctx.layout, h.roles)]
        self.web = AgentsAhead(fleet, [targets[h.name] for h in first]) if first else None
        self.background = AgentsAhead(fleet, [targets[h.name] for h in background]) if background else None

    def cancel(self) -> None:
        for ahead in (self.web, self.background):
            if ahead is not None:
                ahead.cancel()


def roll_tiers(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], hosts: list[Host],
               release_for: dict[str, str], verb: str, held: HeldLock, vouched: bool = False,
               ahead: TiersAhead | None = None) -> str | None:
    """Activate ``release_for[host]`` tier by tier under the lock ``held``; the failed phase's name, or None
    when all went well. ``vouched``: the workers need not wait for the first web batch even when
    ``worker.after_first_web_batch`` asks them to. ``ahead``: the agents begun for the roll."""
    report, layout = ctx.reporter, ctx.layout
    web = [h for h in hosts if "web" in h.roles]
    background = background_tier(ctx, fleet, targets, hosts, release_for, f"{verb}: workers")
    if ahead is not None:
        background.adopt_agents(ahead.background)
    rolled = None
    if web:
        try:
            if vouched or not ctx.env.worker.after_first_web_batch:
                background.start()
            else:
                background.begin_agents()
            rolled = roll(ctx, fleet, targets, web, release_for, lambda name: [layout.web_service],
                          health_request(ctx, layout), ctx.env.web.batch_count(len(web)), f"{verb}: web", held,
                          web_slots=layout.web_slots(), after_batch=background.start, halt=background.failed,
                          first_ahead=ahead.web if ahead is not None else None)
        except BaseException:
            # Ctrl-C, or a failure of smship's own: the workers' batch under way ends first, under the lock.
            background.wait()
            raise
    else:
        background.start()
    moved = background.wait()
    if rolled is not None and not rolled.ok:
        untouched = [h.name for h in web if h.name not in rolled.done and h.name not in rolled.failed]
        report.error(f"{verb} halted: " + "; ".join(f"{n}: {r}" for n, r in rolled.failed.items()))
        if untouched:
            report.info(f"not restarted, still on their old release: {', '.join(untouched)}")
        if moved is not None:
            put_back(ctx, fleet, targets, hosts, moved, verb)
        return "web roll"
    if moved is not None and not moved.ok:
        report.error(f"{verb} halted: " + "; ".join(f"{n}: {r}" for n, r in moved.failed.items()))
        if rolled is not None and rolled.halted:
            report.info(f"web hosts not restarted, still on their old release: {', '.join(rolled.halted)}")
        return "workers"
    return None


def background_tier(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], hosts: list[Host],
                    release_for: dict[str, str], title: str) -> Alongside:
    """The workers and beat of ``hosts`` as one batch, ready to start beside the web tier."""
    return Alongside(ctx, fleet, targets, [h.name for h in hosts if background_units(ctx.layout, h.roles)],
                     background_activations(ctx, hosts, release_for), title)


def background_activations(ctx: EnvContext, hosts: list[Host], release_for: dict[str, str]) -> Activations:
    layout = ctx.layout
    roles = {h.name: list(h.roles) for h in hosts}
    return Activations(ctx, release_for, lambda name: background_units(layout, roles[name]), None,
                       ready_for=lambda name: ready_lines(layout, roles[name], name),
                       background_for=lambda name: agent.background_link(layout.background_release,
                                                                         "web" not in roles[name]),
                       stop_wait=ctx.env.worker.stop_timeout,
                       worker_for=lambda name: layout.worker_slots(ctx.env.worker.stop_timeout)
                       if "worker" in roles[name] else None)


def put_back(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], hosts: list[Host], moved: RollResult,
             verb: str) -> None:
    """The workers and beat that took another release go back to the one they ran, as the halted web
    batch did."""
    back = {name: previous for name, previous in moved.moved_from.items() if previous}
    if not back:
        return
    tier = background_tier(ctx, fleet, targets, [h for h in hosts if h.name in back], back, f"{verb}: workers back")
    tier.start()
    result = tier.wait()
    if not result.ok:
        ctx.reporter.warn("workers not put back: " + "; ".join(f"{n}: {r}" for n, r in result.failed.items()))
