"""Running the checklist: gather once, judge every check, show the verdicts."""

from __future__ import annotations

from rich.markup import escape

from smship.check.checks import CHECKS
from smship.check.facts import gather
from smship.check.model import Verdict
from smship.context import EnvContext
from smship.errors import SmshipError
from smship.ssh import Fleet

_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def run_checks(ctx: EnvContext, fleet: Fleet, *, skip: list[str] = (), cert_days: int = 14,
               preflight: bool = False) -> list[Verdict]:
    facts = gather(ctx, fleet, preflight=preflight, cert_days=cert_days, skip=tuple(skip))
    return [Verdict(c.name, "skip", "skipped with --skip-check") if c.name in skip else c.judge(facts, preflight)
            for c in CHECKS]


def show(ctx: EnvContext, verdicts: list[Verdict]) -> bool:
    """Print one line per check (and its fix); True when nothing failed."""
    console = ctx.reporter.console
    for v in verdicts:
        console.print(f"    {v.name:<18} [{_STYLE[v.status]}]{v.status:<5}[/] {escape(v.reason)}")
        if v.fix:
            console.print(f"    {'':<18} [dim]fix:[/] {escape(v.fix)}")
    ctx.reporter.data["checks"] = [v.as_dict() for v in verdicts]
    counts = {s: sum(v.status == s for v in verdicts) for s in _STYLE}
    console.print("    " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return not counts["fail"]


def preflight(ctx: EnvContext, fleet: Fleet, skip: list[str]) -> list[Verdict]:
    """Deploy's run of the checklist; raises when a check fails, before anything changes."""
    ctx.reporter.step("preflight: the production checklist" + (f" (skipping {', '.join(skip)})" if skip else ""))
    verdicts = run_checks(ctx, fleet, skip=skip, preflight=True)
    if not show(ctx, verdicts):
        failed = [v.name for v in verdicts if v.status == "fail"]
        raise SmshipError(f"preflight failed, nothing was changed: check(s) {', '.join(failed)} failed; fix them "
                          f"(see above), or deploy with --skip-check {','.join(failed)} to go ahead anyway")
    return verdicts
