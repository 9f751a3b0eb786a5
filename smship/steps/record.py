"""The end of every deploy: an audit line on each host, old releases pruned, the lock given back."""

from __future__ import annotations

import getpass
import socket
import time

from smship.context import EnvContext
from smship.layout import Layout
from smship.remote import client as agent
from smship.ssh import Fleet, Target
from smship.steps.lock import HeldLock


# The result of a deploy that found its release live already on every host it was to deploy to.
NOOP = "no-op: already live"


def who_and_when(ctx: EnvContext, started: float) -> dict:
    """The first fields of every audit entry: who acted from where, on which environment, since when."""
    return {"who": f"{getpass.getuser()}@{socket.gethostname()}",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "environment": ctx.name}


def record(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], layout: Layout, outcome: dict,
           result: str, started: float, prune: bool = False, protect: list[str] = (),
           held: HeldLock | None = None) -> bool:
    """The audit line on each host; with ``prune``, old releases removed but for ``protect``; with ``held``,
    the lock given back too. Each host gets them in one exchange.

    A deploy protects the releases it replaced: rollback's default target,
    which need not be among the newest (releases that never went live are).
    """
    entry = {**who_and_when(ctx, started), "result": result, "seconds": round(time.time() - started, 1), **outcome}
    chosen = set(outcome["hosts"])
    audit = agent.audit(layout.audit_log, entry)
    # A worker slot asked to stop may still run its tasks from its release.
    pruning = agent.prune(layout.root, ctx.env.keep_releases, [outcome["release"], *protect],
                          [layout.background_release, layout.worker_slot_release % "a",
                           layout.worker_slot_release % "b"]) if prune else None
    unlocking = set(held.still_held()) if held is not None else set()
    release = held.release_request() if unlocking else None

    def asked_of(name: str) -> list:
        mine = [audit, pruning] if name in chosen else []
        return [r for r in mine if r is not None] + ([release] if name in unlocking else [])

    asked = {name: asked_of(name) for name in [*outcome["hosts"], *sorted(unlocking - chosen)]}
    answers = agent.ask_all(fleet, lambda t: agent.together(asked[t.name]), [targets[name] for name in asked])
    problems, removed = {}, set()
    for name, requests in asked.items():
        said = answers.succeeded.get(name) or [answers.failed[name]] * len(requests)
        for request, answer in zip(requests, said):
            failed = isinstance(answer, Exception)
            if request is audit and (failed or not answer.ok):
                problems[name] = str(answer) if failed else answer.error
            elif request is pruning and not failed:
                removed.update(answer.removed)
            elif request is release:
                held.given_back(name, answer)
    for name, problem in sorted(problems.items()):
        ctx.reporter.warn(f"{name}: the audit line was not written: {problem}")
    if removed:
        ctx.reporter.info(f"pruned old releases: {', '.join(sorted(removed))}")
    ctx.reporter.data["audit"] = entry
    ctx.reporter.info(f"audit: {entry['who']} {entry['environment']} {outcome['release']} {result} in {entry['seconds']}s")
    return result == "ok"
