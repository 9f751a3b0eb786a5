"""``smship status``: per host, the live release, units, readiness and disk."""

from __future__ import annotations

from rich.table import Table

from smship.context import EnvContext, open_fleet
from smship.deploy.lock import lock_path
from smship.deploy.roll import health_request
from smship.layout import Layout
from smship.remote import call_agent


def units_of(layout: Layout, roles: list[str]) -> list[str]:
    units = {"web": [layout.web_socket, layout.web_service, "nginx.service"], "worker": [layout.worker_service],
             "beat": [layout.beat_service], "db": ["postgresql.service", "redis-server.service"], "lb": ["nginx.service"]}
    return list(dict.fromkeys(u for role in roles for u in units[role]))


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def status(ctx: EnvContext) -> bool:
    layout = Layout.of(ctx.app, ctx.env)
    health = health_request(ctx, layout)

    def ask(target):
        host = next(h for h in ctx.env.hosts if h.name == target.name)
        return call_agent(fleet, target, {"op": "status", "root": layout.root, "lock": lock_path(layout),
                                          "units": units_of(layout, host.roles),
                                          "health": health if "web" in host.roles else None}, timeout=60)

    with open_fleet(ctx) as fleet:
        answers = fleet.map(ask)
    table = Table(title=f"{ctx.app.name} / {ctx.name}")
    for column in ("host", "address", "roles", "live release", "units", "ready", "disk free"):
        table.add_column(column)
    ok = True
    for host in ctx.env.hosts:
        answer = answers[host.name]
        if isinstance(answer, BaseException):
            ok = False
            table.add_row(host.name, host.address, ",".join(host.roles), "[red]unreachable[/]", str(answer), "", "")
            ctx.reporter.data.setdefault("hosts_status", {})[host.name] = {"error": str(answer)}
            continue
        units = "\n".join(f"{name} {u['state']} {_uptime(u['uptime'])}" for name, u in answer["units"].items())
        table.add_row(host.name, host.address, ",".join(host.roles), answer["current"] or "none", units,
                      answer["ready"] or "-", f"{answer['free_bytes'] / 2**30:.1f} GiB")
        ctx.reporter.data.setdefault("hosts_status", {})[host.name] = answer
    ctx.reporter.console.print(table)
    return ok
