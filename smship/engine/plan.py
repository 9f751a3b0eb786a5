"""Compare a host's desired state with its facts: what must change, and how.

Pure functions over values, so the whole decision of what provisioning does
on a host is unit-testable without any host.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
from dataclasses import dataclass, field
from typing import Any

from smship.engine.resources import HostState, WebSlotRestart, WorkerSlotRestart
from smship.remote import client as agent


@dataclass
class Change:
    kind: str
    target: str
    summary: str
    diff: str | None = None
    action: dict[str, Any] | None = None
    notify: tuple[str, ...] = ()


@dataclass
class Plan:
    packages: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    handlers: list[str] = field(default_factory=list)
    # A handler switches the web slots: a new uvicorn runs beside the serving one for a moment.
    restarts_web_slots: bool = False

    @property
    def empty(self) -> bool:
        return not self.packages and not self.changes and not self.handlers

    def describe(self) -> list[str]:
        lines = [f"install packages: {' '.join(self.packages)}"] if self.packages else []
        lines += [f"{c.kind} {c.target}: {c.summary}" for c in self.changes]
        lines += [f"handler: {name}" for name in self.handlers]
        return lines


def facts_request(state: HostState, hostos: agent.Request | None = None) -> agent.Request[agent.HostFacts]:
    """What to ask the host so that :func:`plan` can decide everything (and ``hostos`` beside it)."""
    paths: dict[str, str | None] = {}
    for f in state.files:
        # Non-secret files name the hash we want, so the host sends back the
        # old text when it differs (for --diff); secret files never do.
        paths[f.path] = None if f.secret else hashlib.sha256(f.content).hexdigest()
    for resource in (*state.directories, *state.links, *state.absent):
        paths.setdefault(resource.path, None)
    return agent.facts(paths, state.packages, [u.name for u in state.users], [s.name for s in state.services],
                       {e.name: _check(e) for e in state.ensures}, hostos=hostos)


def _check(ensure) -> dict[str, Any]:
    check: dict[str, Any] = {"argv": list(ensure.check), "output": ensure.output}
    if ensure.check_stdin is not None:
        check["stdin"] = base64.b64encode(ensure.check_stdin).decode()
    return check


def _ownership(fact: agent.PathFact, owner: str, group: str, mode: str) -> list[str]:
    wrong = []
    if fact.owner != owner or fact.group != group:
        wrong.append(f"owner {fact.owner}:{fact.group} -> {owner}:{group}")
    if fact.mode != mode.zfill(4):
        wrong.append(f"mode {fact.mode} -> {mode.zfill(4)}")
    return wrong


def _file_diff(path: str, old: str | None, new: bytes) -> str:
    return "".join(difflib.unified_diff((old or "").splitlines(keepends=True),
                                        new.decode(errors="replace").splitlines(keepends=True),
                                        fromfile=f"{path} (host)" if old is not None else "/dev/null",
                                        tofile=f"{path} (smship)"))


def plan(state: HostState, facts: agent.HostFacts) -> Plan:
    result = Plan(packages=[p for p in state.packages if not facts.packages.get(p)])
    paths = facts.paths
    add = result.changes.append

    for user in state.users:
        if facts.users.get(user.name) is None:
            argv = ["useradd", "--home-dir", user.home, "--no-create-home", "--shell", user.shell, "--user-group"]
            argv += ["--system"] if user.system else []
            argv += ["--groups", ",".join(user.groups)] if user.groups else []
            add(Change("user", user.name, "create", action={"kind": "command", "argv": argv + [user.name],
                                                             "label": f"user {user.name}"}))

    for d in state.directories:
        fact = paths[d.path]
        if fact.type != "dir":
            summary = "create" if fact.type == "absent" else f"replace {fact.type} with a directory"
        else:
            summary = ", ".join(_ownership(fact, d.owner, d.group, d.mode))
        if summary:
            add(Change("directory", d.path, summary, action={"kind": "directory", "path": d.path, "owner": d.owner,
                                                               "group": d.group, "mode": d.mode}))

    for f in state.files:
        fact, sha = paths[f.path], hashlib.sha256(f.content).hexdigest()
        if fact.type == "absent":
            summary, diff = "create", None if f.secret else _file_diff(f.path, None, f.content)
        elif fact.sha256 != sha:
            summary = "content (secret: not shown)" if f.secret else "content"
            diff = None if f.secret else _file_diff(f.path, fact.content or "", f.content)
        else:
            summary, diff = ", ".join(_ownership(fact, f.owner, f.group, f.mode)), None
        if summary:
            add(Change("file", f.path, summary, diff, {"kind": "file", "path": f.path, "owner": f.owner,
                                                        "group": f.group, "mode": f.mode,
                                                        "content": base64.b64encode(f.content).decode()}, f.notify))

    for link in state.links:
        fact = paths[link.path]
        if fact.type != "link" or fact.target != link.target:
            add(Change("link", link.path, f"-> {link.target}",
                       action={"kind": "link", "path": link.path, "target": link.target}, notify=link.notify))

    for gone in state.absent:
        if paths[gone.path].type != "absent":
            add(Change("absent", gone.path, "remove", action={"kind": "absent", "path": gone.path}, notify=gone.notify))

    for ensure in state.ensures:
        if not facts.checks.get(ensure.name):
            action = {"kind": "command", "argv": list(ensure.apply), "label": ensure.name}
            if ensure.stdin is not None:
                action["stdin"] = base64.b64encode(ensure.stdin).decode()
            add(Change("ensure", ensure.name, "apply", action=action, notify=ensure.notify))

    # Handlers run once each, after all files are in place, in the order
    # roles declare them, except that systemd must re-read changed unit
    # files before any handler restarts a unit.
    # A handler that an earlier, interrupted run owed (its files changed,
    # then the run failed before the handler ran) is still owed now.
    notified = {name for change in result.changes for name in change.notify}
    notified |= set(facts.pending_handlers)
    result.handlers = sorted((name for name in state.handlers if name in notified),
                             key=lambda name: name != "daemon-reload")
    result.restarts_web_slots = any(isinstance(step, WebSlotRestart) for name in result.handlers
                                    for step in state.handlers[name])

    for service in state.services:
        fact = facts.services.get(service.name)
        verbs = []
        if service.enabled and (fact is None or fact.enabled != "enabled"):
            verbs.append("enable")
        if service.running and (fact is None or fact.active != "active"):
            verbs.append("start")
        if verbs:
            add(Change("service", service.name, " and ".join(verbs)))
    return result


def apply_request(state: HostState, p: Plan, hostos: agent.Request | None = None) -> agent.Request[agent.Applied]:
    """The one request that applies everything but packages, in order (and asks ``hostos`` after)."""
    actions = [c.action for c in p.changes if c.action]
    restarted: list[WebSlotRestart | WorkerSlotRestart] = []
    for name in p.handlers:
        for step in state.handlers[name]:
            label = f"handler {name}"
            if not isinstance(step, (WebSlotRestart, WorkerSlotRestart)):
                actions.append({"kind": "command", "argv": list(step), "label": label})
            elif step not in restarted:
                # Handlers run once every file is in place: one new process reads them all, a second
                # would only switch back.
                restarted.append(step)
                actions.append(agent.web_slot_restart(step.root, step.web, step.health, label)
                               if isinstance(step, WebSlotRestart)
                               else agent.worker_slot_restart(step.root, step.worker, step.ready, label))
    return agent.apply(actions + _service_actions(p), p.handlers, hostos=hostos,
                       timeout=agent.APPLY_TIMEOUT + (state.handler_wait if p.handlers else 0))


def _service_actions(p: Plan) -> list[dict[str, Any]]:
    actions = []
    for change in p.changes:
        if change.kind == "service":
            if "enable" in change.summary:
                actions.append({"kind": "command", "argv": ["systemctl", "enable", change.target], "label": f"enable {change.target}"})
            if "start" in change.summary:
                actions.append({"kind": "command", "argv": ["systemctl", "start", change.target], "label": f"start {change.target}"})
    return actions
