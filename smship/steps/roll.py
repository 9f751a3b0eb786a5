"""Rolling a tier: batches of hosts switched, restarted and health-gated.

Each host is activated by the agent in one round trip: it switches
``current``, restarts the units, waits for the live endpoint then the
ready one to answer as ``env.health`` expects (watching the journal for SM010),
and on failure switches back and restarts the previous release itself, so a
lost connection cannot leave a host half-switched.  With an ``lb`` host,
each web host drains itself in that same round trip and puts itself back
once it serves a healthy release (see :class:`Drainer`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from smship.context import EnvContext
from smship.inventory import Host
from smship.layout import Layout
from smship.remote import AgentsAhead
from smship.remote import client as agent
from smship.ssh import Fleet, Target
from smship.steps.lock import HeldLock


@dataclass
class RollResult:
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    # The release each host of ``done`` that took another one ran before (None: nothing).
    moved_from: dict[str, str | None] = field(default_factory=dict)
    # Hosts left out because ``halt`` said so before their batch.
    halted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def batches(hosts: list[Host], size: int) -> list[list[Host]]:
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


def health_request(ctx: EnvContext, layout: Layout) -> dict:
    return agent.health_gate(ctx.env.health, ctx.env.domain, layout.web_service)


class Drainer:
    """Which web hosts of a batch leave the load balancer for their restart (none without an lb host).

    A drained web host has a flag file; its nginx then answers the lb's requests
    421 and the lb retries them on another web host. Neither nginx reloads, so no
    client's kept-alive connection to the lb is closed under it mid-deploy. The
    host writes the flag and removes it itself, within its activation.
    """

    def __init__(self, ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], held: HeldLock):
        self.fleet, self.targets = fleet, targets
        self.has_lb = bool(ctx.env.hosts_with("lb"))
        self.web_hosts = [h.name for h in ctx.env.hosts_with("web")]
        self.flag = ctx.layout.drain_flag
        self.reporter = ctx.reporter
        # Web hosts not serving the lb: a host a halted deploy left drained is not counted on,
        # nor one the lock was not taken on (unreachable).
        self._out: set[str] | None = {
            n for n in self.web_hosts if n in targets and (n not in held.hosts or n in held.drained)
        } if self.has_lb else None

    def note_for(self, names: list[str], why: str) -> str | None:
        """What the batch ``names`` writes in its flag to drain itself; None: not drained.

        When no other web host would be left serving, nothing is drained:
        systemd's socket holds the requests while uvicorn restarts, which is
        better than the lb having nowhere to send them.
        """
        if not self.has_lb or not names:
            return None
        serving = [n for n in self.web_hosts if n not in names and n not in self._out]
        if not serving:
            self.reporter.info(f"{', '.join(names)}: not drained from the load balancer, "
                               "no other web host serves it")
            return None
        self._out.update(names)
        return f"drained by smship: {why}\n"

    def settle(self, names: list[str], answers) -> None:
        """After the batch: who is back in (each host put itself back once it served again)."""
        if self._out is None:
            return
        for name in names:
            answer = answers.succeeded.get(name)
            if answer is not None and not answer.drained:
                self._out.discard(name)
            elif answer is not None and answer.ok:
                self.reporter.warn(f"{name}: still drained from the load balancer ({answer.undrain_error}); "
                                   f"the next deploy puts it back, or remove {self.flag} on it")

    def undrain(self, names: list[str]) -> None:
        """Put back in those of ``names`` that are out (after a Ctrl-C: a host that never began its
        activation may have been drained by a halted deploy); one that cannot be is named and stays out."""
        names = [n for n in names if self._out is not None and n in self._out]
        if not names:
            return
        answers = agent.ask_all(self.fleet, agent.apply([{"kind": "absent", "path": self.flag}], timeout=60),
                                [self.targets[n] for n in names])
        for name in names:
            answer = answers.succeeded.get(name)
            if answer is not None and answer.ok:
                self._out.discard(name)
                continue
            why = str(answers.failed[name]) if name in answers.failed else answer.error
            self.reporter.warn(f"{name}: still drained from the load balancer ({why}); "
                               f"the next deploy puts it back, or remove {self.flag} on it")


def _aftermath(answer: agent.Activation) -> str:
    """What a failed activation left live on the host, in words."""
    previous = answer.previous
    if answer.untouched:
        return "nothing was switched or restarted there"
    if answer.kept:
        return f"{previous} kept serving; the new release never took a request"
    if not previous:
        return "nothing to switch back to"
    if previous == answer.release:
        # A worker on a host whose web tier already switched: current is shared.
        return f"{previous} stays live here, as this host's web tier already runs it"
    if answer.reverted:
        return f"switched back to {previous} and healthy"
    return f"switched back to {previous} but that failed too: {answer.revert_reason}"


def roll(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], hosts: list[Host], release_for: dict[str, str],
         units_for, health: dict | None, batch_size: int, title: str, held: HeldLock, ready_for=None,
         web_slots: dict | None = None, background_for=None, after_batch=None, halt=None,
         first_ahead: AgentsAhead | None = None) -> RollResult:
    """Activate ``release_for[host]`` on ``hosts`` batch by batch under the lock ``held``; stop at the first
    failing batch, or before a batch when ``halt()`` says so. ``after_batch()`` is called after each batch
    that passed. ``first_ahead``: the first batch's agents, begun by the caller."""
    report = ctx.reporter
    drainer = Drainer(ctx, fleet, targets, held) if health else None
    request_for = Activations(ctx, release_for, units_for, health, ready_for, web_slots, background_for)
    result = RollResult()
    groups = batches(hosts, batch_size)
    ahead: AgentsAhead | None = first_ahead
    try:
        for number, batch in enumerate(groups, 1):
            names = [h.name for h in batch]
            if number > 1 and halt is not None and halt():
                result.halted = [h.name for group in groups[number - 1:] for h in group]
                break
            report.step(f"{title}: batch {number}/{len(groups)}: {', '.join(names)}")
            started = time.monotonic()
            # The next batch's agents start up (sudo, interpreter, imports) while this one restarts.
            this, ahead = ahead, (AgentsAhead(fleet, [targets[h.name] for h in groups[number]])
                                  if number < len(groups) else None)
            try:
                note = drainer.note_for(names, title) if drainer else None
                flag = drainer.flag if drainer and drainer.has_lb else None
                answers = agent.ask_all(fleet, lambda t: request_for(t.name, flag, note),
                                        [targets[name] for name in names], ahead=this,
                                        waiting=lambda hosts, seconds: report.waiting(
                                            f"{title}: batch {number}/{len(groups)}", hosts, seconds))
            except KeyboardInterrupt:
                # Ctrl-C waits for the batch: each host finished its activation
                # (and reverted itself if it failed), or never began it, so it
                # may take traffic again.
                report.warn(f"interrupted: {', '.join(names)} finished activating or never began; "
                            "'smship status' shows which release each host runs")
                if drainer:
                    drainer.undrain(names)
                raise
            finally:
                if this is not None:
                    this.cancel()
            judge(report, title, names, answers, started, result)
            if drainer:
                # Reverted hosts serve the previous release again and put themselves back; the others
                # (unreachable, or whose revert failed) stay drained.
                drainer.settle(names, answers)
            if result.failed:
                break
            if after_batch is not None:
                after_batch()
    finally:
        if ahead is not None:
            ahead.cancel()
    return result


@dataclass
class Activations:
    """The activate request of each host of a roll."""
    ctx: EnvContext
    release_for: dict[str, str]
    units_for: object
    health: dict | None
    ready_for: object = None
    web_slots: dict | None = None
    background_for: object = None
    # Seconds a unit's stop may take within the restart (a worker's warm shutdown waits for its tasks).
    stop_wait: float = 0
    # The worker slots of a host (Layout.worker_slots), None where it runs no worker.
    worker_for: object = None

    def __call__(self, name: str, drain_flag: str | None = None, drain_note: str | None = None):
        layout = self.ctx.layout
        return agent.activate(
            layout.root, self.release_for[name], self.units_for(name), self.health, layout.activation_log,
            timeout=self.stop_wait + self.ctx.env.health.timeout * 2 + 120,
            ready=self.ready_for(name) if self.ready_for else None,
            drain_flag=drain_flag, drain_note=drain_note, web=self.web_slots,
            background=self.background_for(name) if self.background_for else None,
            worker=self.worker_for(name) if self.worker_for else None)


def judge(report, title: str, names: list[str], answers, started: float, result: RollResult) -> None:
    """Say how each host of a batch came out and add it to ``result``."""
    took = [a.took for a in answers.succeeded.values() if a.took is not None]
    # The batch's wall time beside its slowest host's own (restart and gate): the rest is smship's.
    report.data.setdefault("batches", []).append({
        "title": title, "hosts": names, "seconds": round(time.monotonic() - started, 3),
        "on_hosts": round(max(took), 3) if took else None})
    for name in answers:
        seconds = time.monotonic() - started
        if name in answers.failed:
            result.failed[name] = str(answers.failed[name])
            report.host(name, "failed", result.failed[name], seconds)
            continue
        answer = answers.succeeded[name]
        if answer.stop_error:
            report.warn(f"{name}: the slot it left could not be stopped ({answer.stop_error})")
        if answer.reload_error:
            report.warn(f"{name}: {answer.reload_error}; systemctl warns that unit files changed "
                        "until 'systemctl daemon-reload' succeeds there")
        if answer.record_error:
            report.warn(f"{name}: the activation log was not written ({answer.record_error}); "
                        "rollback without --to cannot count this activation")
        if answer.ok:
            result.done.append(name)
            if answer.previous != answer.release:
                result.moved_from[name] = answer.previous
            moved = (f"restarted on {answer.release}" if answer.previous == answer.release
                     else f"{answer.previous or 'nothing'} -> {answer.release}")
            report.host(name, "changed", moved + (f" ({answer.status})" if answer.status else ""),
                        seconds)
        else:
            result.failed[name] = f"{answer.reason}; {_aftermath(answer)}"
            report.host(name, "failed", result.failed[name], seconds)
