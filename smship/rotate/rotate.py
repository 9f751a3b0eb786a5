"""Rotating the app's signing key across the fleet.

The order is the safety argument:

1. The backend gets the new value first, keeping the old one recoverable
   (``NAME_PREVIOUS`` in a file, the previous version in AWS): no host ever
   runs a key the backend does not have.
2. Each host's env file gets the new line (only that line), then the web
   tier restarts in the deploy's health-gated batches, then workers and beat
   (beat's process holds the key in its environment too).
3. Every host is asked again which generation its env file and its running
   units hold. A fleet left split (a host down or failing) is reported host
   by host, with how to finish (``--resume``) or go back (``--undo``).
"""

from __future__ import annotations

import time
from dataclasses import asdict

from smship.appenv import app_environment
from smship.context import EnvContext, open_fleet, targets_of
from smship.steps.lock import environment_lock
from smship.steps.record import who_and_when
from smship.steps.tiers import roll_tiers
from smship.errors import SmshipError
from smship.layout import Layout
from smship.hostroles import app_hosts
from smship.remote import client as agent
from smship.rotate.generations import HostKey, Names, key_fingerprint, probe
from smship.secretkey import DEVELOPMENT_ENVIRONMENTS, generate, weakness
from smship.secrets import backend_for
from smship.templating import env_line

CONSEQUENCES = ("every existing session becomes invalid and signed-in users must sign in again; "
                "anything else the app signed with the old key stops verifying")


def _announce(ctx: EnvContext, name: str, resume: bool, undo: bool, backend) -> None:
    report = ctx.reporter
    if undo:
        report.step(f"putting the previous {name} of {ctx.name} back: sessions made since the last rotation "
                    f"become invalid (those users sign in again); sessions from before it verify again")
    elif resume:
        report.step(f"finishing the rotation of {name} of {ctx.name}: hosts not yet on the key in "
                    f"{backend.description} get it: {CONSEQUENCES} on those hosts")
    else:
        report.step(f"rotating {name} of {ctx.name}: {CONSEQUENCES}. The old key stays recoverable in "
                    f"{backend.description} ({backend.keeps_previous(name)})")


def _target_value(ctx: EnvContext, backend, name: str, values: dict[str, str], states: dict[str, HostKey],
                  resume: bool, undo: bool) -> dict[str, str]:
    """Store the value the fleet must move to (unless resuming); the backend's values after that."""
    if resume:
        return values
    names = Names(key_fingerprint(name, values.get(name)), key_fingerprint(name, backend.previous(name)))
    off = {host: state for host, state in states.items() if not state.holds(names.current)}
    if off and not undo:
        raise SmshipError(
            f"not every host runs the {name} in {backend.description}: "
            + "; ".join(f"{host} {names.describe(state)}" for host, state in off.items())
            + f". Finish that first with `smship rotate-secret {ctx.name} --resume` (or go back with --undo); "
            "nothing was changed")
    backend.store(name, backend.previous(name) if undo else generate())
    return backend.read()


def _write_env_files(ctx: EnvContext, fleet, targets, layout: Layout, name: str, value: str,
                     hosts: list[str]) -> list[str]:
    """Replace the key's line in each host's env file; the hosts where that worked."""
    request = agent.setenv(layout.env_file, name, env_line(name, value), timeout=60)
    answers = agent.ask_all(fleet, request, [targets[h] for h in hosts])
    written = []
    for host in answers:
        answer = answers.succeeded.get(host)
        if answer is None or not answer.ok:
            detail = answers.failed[host] if answer is None else answer.error
            ctx.reporter.host(host, "failed", f"env file not written: {detail}")
        else:
            written.append(host)
            ctx.reporter.host(host, "changed", f"{layout.env_file}: {name} -> {answer.file}")
    return written


def _audit(ctx: EnvContext, fleet, targets, layout: Layout, hosts: list[str], entry: dict) -> None:
    agent.ask_all(fleet, agent.audit(layout.audit_log, entry, timeout=60), [targets[h] for h in hosts])


def _conclude(ctx: EnvContext, name: str, names: Names, final) -> bool:
    report = ctx.reporter
    report.step("key generation on each host")
    rows, groups = {}, {}
    for host in final:
        if host in final.failed:
            words = "unreachable: its key is unknown"
            report.host(host, "failed", f"{words} ({final.failed[host]})")
            rows[host] = {"reachable": False, "current": False}
        else:
            state = final.succeeded[host]
            words = names.describe(state)
            on = state.holds(names.current)
            report.host(host, "ok" if on else "failed", words)
            rows[host] = {"reachable": True, "current": on, "env_file": state.file,
                          "units": {unit: asdict(key) for unit, key in state.units.items()}}
        groups.setdefault(words, []).append(host)
    report.data.update(key={"name": name, "current": names.current, "previous": names.previous}, generations=rows)
    if all(row["current"] for row in rows.values()):
        report.info(f"every app host runs {names.of(names.current)}")
        return True
    report.error("the fleet is split: " + "; ".join(f"{', '.join(h)}: {w}" for w, h in groups.items()))
    report.info(f"to finish: once every host answers, `smship rotate-secret {ctx.name} --resume` rewrites and "
                "restarts only the hosts not on the current key")
    report.info(f"to go back: `smship rotate-secret {ctx.name} --undo` puts the previous key back on every host")
    return False


def _refusals(ctx: EnvContext, backend, name: str, resume: bool, undo: bool) -> dict[str, str]:
    """Everything that can be refused before a host is contacted; the backend's values."""
    # Only the key the app alone reads can change without touching another
    # service: a database or Redis password must change in Postgres or Redis too.
    if name != ctx.app.settings.secret_key:
        raise SmshipError(f"--name {name}: rotate-secret rotates {ctx.app.settings.secret_key} only, the key the "
                          "app reads (app.settings.secret_key); a database or Redis password must also change in "
                          "Postgres or Redis, which it does not do")
    if resume and undo:
        raise SmshipError("--resume and --undo exclude each other")
    if not resume:
        backend.check_writable(name)
    values = backend.read()
    if undo and not backend.previous(name):
        raise SmshipError(f"{backend.description}: no previous {name} to go back to")
    if resume and not values.get(name):
        raise SmshipError(f"{backend.description}: {name} is not set; there is nothing to roll out")
    problem = weakness(values.get(name), name)
    if resume and app_environment(ctx.app, ctx.env) not in DEVELOPMENT_ENVIRONMENTS and problem:
        raise SmshipError(f"{backend.description}: {problem}; --resume rolls out the "
                          "backend's current value, so it must be strong")
    return values


def rotate_secret(ctx: EnvContext, name: str | None = None, resume: bool = False, undo: bool = False) -> bool:
    """Rotate ``name``, by default the key the app reads (``app.settings.secret_key``)."""
    report, layout, started = ctx.reporter, ctx.layout, time.time()
    name = name or ctx.app.settings.secret_key
    backend = backend_for(ctx.env.secrets, ctx.app.settings.backend_names())
    values = _refusals(ctx, backend, name, resume, undo)
    _announce(ctx, name, resume, undo, backend)
    hosts = {h.name: h for h in ctx.env.hosts}
    app_names = [h.name for h in app_hosts(ctx.env.hosts)]
    with open_fleet(ctx) as fleet:
        targets = {t.name: t for t in targets_of(ctx)}
        report.step(f"preflight: {len(hosts)} host(s) of {ctx.name}")
        first = probe(fleet, list(targets.values()), hosts, layout, name)
        for host, error in first.failed.items():
            report.host(host, "failed", f"unreachable, left as it is: {error}")
        reachable = list(first.succeeded)
        if not set(reachable) & set(app_names):
            raise SmshipError("no host that runs the app answered; nothing was changed")
        with environment_lock(fleet, [targets[h] for h in reachable], layout, f"rotate-secret {ctx.name}",
                              warn=report.warn) as held:
            # Asked again under the lock: a deploy may have restarted units since.
            states = probe(fleet, [targets[h] for h in reachable if h in app_names], hosts, layout, name).succeeded
            values = _target_value(ctx, backend, name, values, states, resume, undo)
            names = Names(key_fingerprint(name, values[name]), key_fingerprint(name, backend.previous(name)))
            report.info(f"{backend.description}: {name} is {names.of(names.current)}")
            todo = [h for h, s in states.items() if not s.holds(names.current)]
            stale_files = [h for h in todo if states[h].file != names.current]
            if stale_files:
                report.step(f"writing {name} into the env file of {len(stale_files)} host(s)")
            written = _write_env_files(ctx, fleet, targets, layout, name, values[name], stale_files)
            restart = [hosts[h] for h in todo if (h in written or h not in stale_files) and states[h].current]
            if restart:
                roll_tiers(ctx, fleet, targets, restart, {h.name: states[h.name].current for h in restart},
                           "rotate-secret", held)
            final = probe(fleet, [targets[h] for h in app_names], hosts, layout, name)
            ok = _conclude(ctx, name, names, final)
            _audit(ctx, fleet, targets, layout, [h for h in app_names if h in final.succeeded],
                   {**who_and_when(ctx, started),
                    "action": "undo-rotate-secret" if undo else "rotate-secret", "name": name,
                    "key": names.current, "result": "ok" if ok else "split",
                    "seconds": round(time.time() - started, 1)})
    return ok
