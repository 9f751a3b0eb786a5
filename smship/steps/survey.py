"""Preflight: every host answers, is provisioned, and says what it runs."""

from __future__ import annotations

from dataclasses import dataclass

from smship.context import EnvContext
from smship.steps.lock import lock_path
from smship.errors import SmshipError
from smship.layout import Layout
from smship.remote import call_agent
from smship.ssh import Fleet


@dataclass
class HostSurvey:
    current: str | None
    releases: list[str]
    complete: list[str]
    free_bytes: int
    # (release, the release live before it) for each release that went live
    # here, oldest first; None: no record (only an older smship deployed).
    activations: list[tuple[str, str | None]] | None = None
    interpreter: dict | None = None     # the app's Python on the host: version, machine, glibc


def survey(ctx: EnvContext, fleet: Fleet, layout: Layout, app_hosts: list[str]) -> dict[str, HostSurvey]:
    """One round trip per host; raises naming every host that is not ready."""
    ctx.reporter.step(f"preflight: {len(ctx.env.hosts)} host(s) of {ctx.name}")
    request = {"op": "inspect", "root": layout.root, "lock": lock_path(layout), "activation_log": layout.activation_log,
               "python": ctx.app.interpreter}
    answers = fleet.map(lambda t: call_agent(fleet, t, request, timeout=60))
    problems, found = [], {}
    for name, answer in answers.items():
        if isinstance(answer, BaseException):
            problems.append(str(answer))
            ctx.reporter.host(name, "failed", str(answer))
            continue
        if name in app_hosts and not answer["exists"]:
            problems.append(f"{name}: {layout.root} does not exist; run 'smship provision {ctx.name}' first")
            ctx.reporter.host(name, "failed", problems[-1])
            continue
        found[name] = HostSurvey(answer["current"], [r["id"] for r in answer["releases"]],
                                 [r["id"] for r in answer["releases"] if r["complete"]], answer["free_bytes"],
                                 [tuple(pair) for pair in answer["activations"]]
                                 if answer.get("activations") is not None else None,
                                 answer.get("interpreter"))
        ctx.reporter.host(name, "ok", f"live: {answer['current'] or 'none'}")
    if problems:
        raise SmshipError("preflight failed, nothing was changed: " + "; ".join(problems))
    return found
