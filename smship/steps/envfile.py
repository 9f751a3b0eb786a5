"""The app hosts' env files (the release steps' too, and the storage CA they name) brought in step with the inventory.

Only these files are written, with no handler: the processes pick the new
values up when the command restarts them through the health-gated roll.
``storage setup`` and ``deploy`` both do this, so neither a new storage
section nor a changed ``env:`` value waits for the next provision.
"""

from __future__ import annotations

from smship.context import EnvContext
from smship.engine.plan import apply_request, facts_request, plan
from smship.engine.resources import HostState
from smship.engine.roles import desired_state
from smship.engine.variables import host_variables
from smship.errors import SmshipError
from smship.inventory import Host
from smship.remote import client as agent
from smship.templating import environment


def settings_files(ctx: EnvContext, host: Host, secrets: dict[str, str]) -> HostState:
    """The part of ``host``'s desired state that carries the app's settings.

    Only the app role is rendered: the others would read what this command does not need
    (TLS files, for one).
    """
    layout = ctx.layout
    project_dir = ctx.inventory.path.parent
    variables = host_variables(ctx, host, secrets, env_file_only=True)
    app = desired_state(["app"], variables, project_dir, environment(project_dir), part=True)
    settings = (layout.env_file, layout.direct_env_file, layout.storage_ca)
    return HostState(files=[f for f in app.files if f.path in settings],
                     absent=[a for a in app.absent if a.path in settings])


def settings_plan(fleet, target, state: HostState):
    """What writing ``state`` on ``target`` would change (one round trip)."""
    return plan(state, agent.ask(fleet, target, facts_request(state)))


def write_settings(fleet, target, state: HostState) -> list[str]:
    """Write the files that differ (no handler runs); their paths."""
    host_plan = settings_plan(fleet, target, state)
    if not host_plan.changes:
        return []
    host_plan.handlers = []
    answer = agent.ask(fleet, target, apply_request(state, host_plan))
    if not answer.ok:
        raise SmshipError(f"{target.name}: {answer.failed}: {answer.error}")
    return [change.target for change in host_plan.changes]


def refresh_settings(ctx: EnvContext, fleet, targets: dict, states: dict[str, HostState]) -> bool:
    """Each host's env file as ``states`` (:func:`settings_files`) has it; False when one could not be
    written (each is reported)."""
    report = ctx.reporter
    report.step(f"settings: the env file of {len(states)} host(s) in step with the inventory")
    outcomes = fleet.map(lambda t: write_settings(fleet, t, states[t.name]), [targets[name] for name in states])
    for name, problem in outcomes.failed.items():
        report.host(name, "failed", f"env file not written: {problem}")
    for name, written in outcomes.succeeded.items():
        report.host(name, "changed" if written else "ok", ", ".join(written) if written else "unchanged")
    return outcomes.ok
