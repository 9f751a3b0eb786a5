"""Removing a deploy lock left by a deploy that died (power cut, killed laptop)."""

from __future__ import annotations

from smship.context import EnvContext, open_fleet
from smship.steps.lock import holder_text, lock_path
from smship.remote import client as agent


def unlock(ctx: EnvContext, yes: bool) -> bool:
    layout = ctx.layout
    path = lock_path(layout)
    with open_fleet(ctx) as fleet:
        answers = agent.ask_all(fleet, agent.inspect(layout.root, path))
        for name in answers:
            if name in answers.failed:
                ctx.reporter.host(name, "failed", str(answers.failed[name]))
                continue
            held = answers.succeeded[name].lock
            if held is None:
                ctx.reporter.host(name, "ok", "not locked")
            elif not yes:
                ctx.reporter.host(name, "ok", f"locked by {holder_text(held)}; --yes removes it")
            else:
                agent.ask(fleet, fleet.targets[name], agent.unlock(path, None, force=True))
                ctx.reporter.host(name, "changed", f"removed the lock of {holder_text(held)}")
    return not ctx.reporter.failed
