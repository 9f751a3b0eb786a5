"""Removing a deploy lock left by a deploy that died (power cut, killed laptop)."""

from __future__ import annotations

from smship.context import EnvContext, open_fleet
from smship.steps.lock import holder_text, lock_path
from smship.remote import call_agent


def unlock(ctx: EnvContext, yes: bool) -> bool:
    layout = ctx.layout
    path = lock_path(layout)
    with open_fleet(ctx) as fleet:
        answers = fleet.map(lambda t: call_agent(fleet, t, {"op": "inspect", "root": layout.root, "lock": path}))
        for name, answer in answers.items():
            if isinstance(answer, BaseException):
                ctx.reporter.host(name, "failed", str(answer))
            elif answer["lock"] is None:
                ctx.reporter.host(name, "ok", "not locked")
            elif not yes:
                ctx.reporter.host(name, "ok", f"locked by {holder_text(answer['lock'])}; --yes removes it")
            else:
                call_agent(fleet, fleet.targets[name], {"op": "unlock", "path": path, "force": True, "token": None})
                ctx.reporter.host(name, "changed", f"removed the lock of {holder_text(answer['lock'])}")
    return not ctx.reporter.failed
