"""Rolling a tier: batches of hosts switched, restarted and health-gated.

Each host is activated by the agent in one round trip: it switches
``current``, restarts the units, waits for ``/health/live`` then for
``/health/ready`` to report ``healthy`` (watching the journal for SM010),
and on failure switches back and restarts the previous release itself, so a
lost connection cannot leave a host half-switched.  With an ``lb`` host,
each batch is drained from the upstream first and put back after.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass, field

from smship.context import EnvContext
from smship.errors import SmshipError
from smship.inventory import Host
from smship.layout import Layout
from smship.remote import call_agent
from smship.ssh import Fleet, Target
from smship.templating import environment


@dataclass
class RollResult:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def batches(hosts: list[Host], size: int) -> list[list[Host]]:
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


def health_request(ctx: EnvContext, layout: Layout) -> dict:
    health = ctx.env.health
    return {"unit": layout.web_service, "port": 443, "host": ctx.env.domain, "live": health.live,
            "ready": health.ready, "timeout": health.timeout, "accept_degraded": health.accept_degraded}


class Drainer:
    """Marks web hosts ``down`` in every lb host's upstream (no-op without lb)."""

    def __init__(self, ctx: EnvContext, fleet: Fleet, targets: dict[str, Target]):
        self.ctx, self.fleet, self.targets = ctx, fleet, targets
        self.lbs = [targets[h.name] for h in ctx.env.hosts_with("lb") if h.name in targets]
        self.layout = Layout.of(ctx.app, ctx.env)

    def set(self, drained: list[str]) -> None:
        if not self.lbs:
            return
        jinja = environment(self.ctx.inventory.path.parent)
        text = jinja.get_template("nginx-upstream.conf.j2").render(
            app=self.ctx.app, web_hosts=self.ctx.env.hosts_with("web"), drained=drained)
        request = {"op": "apply", "actions": [
            {"kind": "file", "path": f"/etc/nginx/smship/{self.ctx.app.name}-upstream.conf", "owner": "root",
             "group": "root", "mode": "0644", "content": base64.b64encode(text.encode()).decode()},
            {"kind": "command", "argv": ["nginx", "-t", "-q"], "label": "nginx -t"},
            {"kind": "command", "argv": ["systemctl", "reload", "nginx"], "label": "reload nginx"},
        ]}
        answers = self.fleet.map(lambda t: call_agent(self.fleet, t, request), self.lbs)
        for name, answer in answers.items():
            if isinstance(answer, BaseException) or not answer.get("ok"):
                detail = answer if isinstance(answer, BaseException) else answer.get("error")
                raise SmshipError(f"{name}: could not update the load balancer: {detail}")
        # nginx finishes in-flight requests on old workers; new ones avoid the host.
        time.sleep(0.5)


def _aftermath(answer: dict) -> str:
    """What a failed activation left live on the host, in words."""
    previous = answer.get("previous")
    if not previous:
        return "nothing to switch back to"
    if previous == answer["release"]:
        # A worker on a host whose web tier already switched: current is shared.
        return f"{previous} stays live here, as this host's web tier already runs it"
    if answer.get("reverted"):
        return f"switched back to {previous} and healthy"
    return f"switched back to {previous} but that failed too: {answer.get('revert_reason')}"


def activate_request(layout: Layout, release: str, units: list[str], health: dict | None) -> dict:
    return {"op": "activate", "root": layout.root, "release": release, "restart": units, "health": health}


def roll(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], hosts: list[Host], release_for: dict[str, str],
         units_for, health: dict | None, batch_size: int, title: str) -> RollResult:
    """Activate ``release_for[host]`` on ``hosts`` batch by batch; stop at the first failing batch."""
    report = ctx.reporter
    layout = Layout.of(ctx.app, ctx.env)
    drainer = Drainer(ctx, fleet, targets) if health else None
    result = RollResult()
    groups = batches(hosts, batch_size)
    for number, batch in enumerate(groups, 1):
        report.step(f"{title}: batch {number}/{len(groups)}: {', '.join(h.name for h in batch)}")
        if drainer:
            drainer.set([h.name for h in batch])
        started = time.monotonic()
        try:
            answers = fleet.map(lambda t: call_agent(fleet, t, activate_request(
                layout, release_for[t.name], units_for(t.name), health), timeout=ctx.env.health.timeout * 2 + 120),
                [targets[h.name] for h in batch])
        except KeyboardInterrupt:
            # Ctrl-C waits for the batch: each host finished its activation
            # (and reverted itself if it failed), so it may take traffic again.
            report.warn(f"interrupted: {', '.join(h.name for h in batch)} finished activating; "
                        "'smship status' shows which release each host runs")
            if drainer:
                drainer.set([])
            raise
        for name, answer in answers.items():
            seconds = time.monotonic() - started
            if isinstance(answer, BaseException):
                result.failed[name] = str(answer)
                report.host(name, "failed", str(answer), seconds)
            elif answer["ok"]:
                result.done.append(name)
                moved = (f"restarted on {answer['release']}" if answer.get("previous") == answer["release"]
                         else f"{answer.get('previous') or 'nothing'} -> {answer['release']}")
                report.host(name, "changed", moved + (f" ({answer['status']})" if answer.get("status") else ""),
                            seconds)
            else:
                result.failed[name] = f"{answer['reason']}; {_aftermath(answer)}"
                report.host(name, "failed", result.failed[name], seconds)
        if drainer and not result.failed:
            drainer.set([])
        if result.failed:
            if drainer:
                # Reverted hosts serve the previous release again; unreachable
                # ones stay drained so the lb sends them nothing.
                drainer.set([n for n, reason in result.failed.items() if "switched back" not in reason or "failed too" in reason])
            break
    return result
