"""``smship status``: per host, the live release, units, readiness (and drained from the lb) and disk."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from smship.context import EnvContext
from smship.steps.lock import lock_path
from smship.steps.roll import health_request
from smship.hostroles import POSTGRES_CLUSTER_UNIT, background_units, units_of
from smship.remote import client as agent


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def status(ctx: EnvContext, fleet, ahead=None) -> bool:
    """The table (or JSON) of every host's answer; ``ahead``: agents begun on the hosts (see
    :func:`smship.context.fleet_begun`)."""
    layout = ctx.layout
    health = health_request(ctx, layout)

    def ask(target) -> agent.Request[agent.HostStatus]:
        host = next(h for h in ctx.env.hosts if h.name == target.name)
        # The cluster's unit is named after its major: without the inventory's, the db host reads its own
        # in the same round trip.
        major = ctx.env.db.postgres_version
        postgres = POSTGRES_CLUSTER_UNIT % major if major else POSTGRES_CLUSTER_UNIT
        return agent.status(layout.root, lock_path(layout),
                            units_of(layout, host.roles, postgres_unit=postgres, socket=True, nginx_on_web=True),
                            health if "web" in host.roles else None,
                            layout.drain_flag if "web" in host.roles else None, timeout=60,
                            web=layout.web_slots() if "web" in host.roles else None,
                            worker=layout.worker_slots() if "worker" in host.roles else None,
                            background=layout.background_release if background_units(layout, host.roles) else None,
                            postgres_unit=POSTGRES_CLUSTER_UNIT if "db" in host.roles and not major else None)

    answers = agent.ask_all(fleet, ask, ahead=ahead)
    table = Table(title=f"{ctx.app.name} / {ctx.name}")
    for column in ("host", "roles", "live release", "unit", "state", "uptime", "ready", "disk free"):
        table.add_column(column, no_wrap=column in ("live release", "unit"))
    ok = True
    for host in ctx.env.hosts:
        if host.name in answers.failed:
            ok = False
            error = str(answers.failed[host.name])
            table.add_row(host.name, ",".join(host.roles), "[red]unreachable[/]", escape(error), "", "", "", "")
            ctx.reporter.data.setdefault("hosts_status", {})[host.name] = {"error": error}
            continue
        answer = answers.succeeded[host.name]
        # One row per unit; the host's own facts only on its first row.
        live = answer.current or "none"
        if answer.background not in (None, answer.current):
            # A halted deploy that could not put them back: the worker and beat run another release.
            live += f"\n[yellow]workers: {answer.background}[/]"
        first = [host.name, ",".join(host.roles), live]
        # A halted deploy leaves a host it could not put back drained from the lb.
        ready = escape(answer.ready or "-") + (", [yellow]drained[/]" if answer.drained else "")
        last = [ready, f"{answer.free_bytes / 2**30:.1f} GiB"]
        for name, unit in answer.units.items() or {"-": None}.items():
            state = "-" if unit is None else unit.state if unit.state == "active" else f"[red]{unit.state}[/]"
            label = name.removesuffix(".service")
            if unit is not None and unit.idle:
                # The slot a deploy switched away from, still finishing its requests or tasks.
                label, state = f"{label} (old slot)", f"[yellow]{unit.state}[/]"
            table.add_row(*first, label, state, "-" if unit is None else _uptime(unit.uptime), *last)
            first, last = ["", "", ""], ["", ""]
        table.add_section()
        ctx.reporter.data.setdefault("hosts_status", {})[host.name] = {**answer.answer, "roles": host.roles}
    answered = len(answers.succeeded)
    ctx.reporter.summary = (f"{answered} host(s) answered" if answered == len(ctx.env.hosts)
                            else f"{answered} of {len(ctx.env.hosts)} host(s) answered")
    console = ctx.reporter.console
    if not console.is_terminal:
        # A pipe or a file has no width to respect: keep every row on one line.
        console = Console(file=console.file, width=max(console.width, 160), highlight=False)
    console.print(table)
    return ok
