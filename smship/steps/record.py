"""The end of every deploy: an audit line on each host, old releases pruned."""

from __future__ import annotations

import getpass
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from smship.context import EnvContext
from smship.layout import Layout
from smship.remote import client as agent
from smship.ssh import Fleet, Target


# The result of a deploy that found its release live already on every host it was to deploy to.
NOOP = "no-op: already live"


def who_and_when(ctx: EnvContext, started: float) -> dict:
    """The first fields of every audit entry: who acted from where, on which environment, since when."""
    return {"who": f"{getpass.getuser()}@{socket.gethostname()}",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "environment": ctx.name}


def record(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], layout: Layout, outcome: dict,
           result: str, started: float, prune: bool = False, protect: list[str] = ()) -> bool:
    """The audit line on each host; with ``prune``, old releases removed but for ``protect``.

    A deploy protects the releases it replaced: rollback's default target,
    which need not be among the newest (releases that never went live are).
    """
    entry = {**who_and_when(ctx, started), "result": result, "seconds": round(time.time() - started, 1), **outcome}
    chosen = [targets[name] for name in outcome["hosts"]]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="smship-prune") as beside:
        # The prune and the audit line touch different files: one waits for the other for nothing.
        pruning = beside.submit(agent.ask_all, fleet, agent.prune(
            layout.root, ctx.env.keep_releases, [outcome["release"], *protect],
            # A worker slot asked to stop may still run its tasks from its release.
            [layout.background_release, layout.worker_slot_release % "a", layout.worker_slot_release % "b"]),
            chosen) if prune else None
        written = agent.ask_all(fleet, agent.audit(layout.audit_log, entry), chosen)
    problems = {**{n: str(e) for n, e in written.failed.items()},
                **{n: a.error for n, a in written.succeeded.items() if not a.ok}}
    for name, problem in sorted(problems.items()):
        ctx.reporter.warn(f"{name}: the audit line was not written: {problem}")
    if pruning is not None:
        removed = sorted({r for answer in pruning.result().succeeded.values() for r in answer.removed})
        if removed:
            ctx.reporter.info(f"pruned old releases: {', '.join(removed)}")
    ctx.reporter.data["audit"] = entry
    ctx.reporter.info(f"audit: {entry['who']} {entry['environment']} {outcome['release']} {result} in {entry['seconds']}s")
    return result == "ok"
