"""Preflight: every host answers, is provisioned (by this smship: its worker and beat run from their own
link), and says what it runs."""

from __future__ import annotations

from smship.context import EnvContext
from smship.steps.lock import lock_path
from smship.errors import SmshipError
from smship.hostroles import WORKER_KILL_MODE, background_units
from smship.layout import Layout
from smship.remote import client as agent
from smship.ssh import Fleet


# What a host said of its releases, lock, free space and interpreter.
HostSurvey = agent.Inspection


def survey(ctx: EnvContext, fleet: Fleet, layout: Layout, app_hosts: list[str],
           content: bool = False, restarts: bool = True, ahead=None) -> dict[str, HostSurvey]:
    """One round trip per host (with ``content``, the live release's digest too; through the agents
    ``ahead`` began, if any); raises naming every host that is not ready (with ``restarts``, for the
    command to restart its units)."""
    ctx.reporter.step(f"preflight: {len(ctx.env.hosts)} host(s) of {ctx.name}")
    request = agent.inspect(layout.root, lock_path(layout), layout.activation_log, ctx.app.interpreter, timeout=60,
                            content=content, background=layout.background_release,
                            workdirs=[layout.worker_slot_service % "a", layout.beat_service,
                                      layout.pre_slot_worker_service])
    roles = {h.name: h.roles for h in ctx.env.hosts}
    answers = agent.ask_all(fleet, request, ahead=ahead)
    problems, found = [], {}
    for name in answers:
        if name in answers.failed:
            problems.append(str(answers.failed[name]))
            ctx.reporter.host(name, "failed", problems[-1])
            continue
        answer = answers.succeeded[name]
        if name in app_hosts and not answer.exists:
            problems.append(f"{name}: {layout.root} does not exist; run 'smship provision {ctx.name}' first")
            ctx.reporter.host(name, "failed", problems[-1])
            continue
        stale = [f"{unit} runs from {answer.workdirs[unit]}" for unit in background_units(layout, roles.get(name, ()))
                 if unit == layout.beat_service and restarts
                 and answer.workdirs.get(unit) not in (None, layout.background_release)]
        if stale:
            problems.append(f"{name}: {', '.join(stale)}, not {layout.background_release} (an older smship's unit "
                            f"file); run 'smship provision {ctx.name}' first")
            ctx.reporter.host(name, "failed", problems[-1])
            continue
        if restarts and "worker" in roles.get(name, ()) and answer.workdirs.get(layout.pre_slot_worker_service):
            problems.append(f"{name}: {layout.pre_slot_worker_service} is the worker unit of an older smship; "
                            f"run 'smship provision {ctx.name}' first to hand it over to the worker slots")
            ctx.reporter.host(name, "failed", problems[-1])
            continue
        found[name] = answer
        ctx.reporter.host(name, "ok", f"live: {answer.current or 'none'}")
        slot = layout.worker_slot_service % "a"
        kill_mode = answer.kill_modes.get(slot)
        if restarts and "worker" in roles.get(name, ()) and kill_mode not in (None, WORKER_KILL_MODE):
            ctx.reporter.warn(f"{name}: {layout.worker_service} (KillMode={kill_mode}, an older smship's unit file) "
                              f"kills the tasks it runs when it restarts; 'smship provision {ctx.name}' gives it "
                              f"KillMode={WORKER_KILL_MODE}, whose warm shutdown lets them finish")
    if problems:
        raise SmshipError("preflight failed, nothing was changed: " + "; ".join(problems))
    return found
