"""An in-memory fleet for testing orchestration without hosts.

:class:`FakeFleet` is smship's real :class:`~smship.ssh.Fleet` (its ``map``,
parallelism and result handling are the ones commands use) with the
transport replaced: agent requests are answered by :class:`FakeHost` objects
that keep releases, the live one, the deploy lock, units and logs in memory;
other commands (the virtualenv install, migrations, release commands) are
recorded and succeed unless a test says otherwise.  Every remote action
lands in one ordered ``events`` list, so a test can assert what happened
before what, across hosts.

Only what orchestration depends on is modelled: an agent op it does not know
fails the test loudly instead of answering something plausible.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from smship.remote import AGENT_SOURCE, agent, agent_argv, agent_request
from smship.ssh import Begun, Fleet, Result, RsyncResult, SSHOptions


@dataclass
class FakeHost:
    name: str
    releases: dict[str, bool] = field(default_factory=dict)       # id -> complete
    contents: dict[str, str] = field(default_factory=dict)        # id -> release.json's content digest
    commits: dict[str, str | None] = field(default_factory=dict)  # id -> its git commit (None: a working tree's)
    current: str | None = None
    activations: list[tuple[str, str | None]] = field(default_factory=list)
    lock: dict | None = None
    files: dict[str, bytes] = field(default_factory=dict)           # path -> content (env file, drain flag...)
    owners: dict[str, tuple[str, str, str]] = field(default_factory=dict)   # path -> owner, group, mode
    audit: list[dict] = field(default_factory=list)
    python: str = "3.13.5"
    # Releases whose activation fails its health gate on this host.
    unhealthy: set[str] = field(default_factory=set)
    env_file: dict[str, str] = field(default_factory=dict)           # the app's env file
    units: dict[str, dict[str, str]] = field(default_factory=dict)     # unit -> the environment it started with
    background: str | None = None      # the release the worker and beat run from (their own link)
    workdirs: dict[str, str] = field(default_factory=dict)     # unit -> its WorkingDirectory (absent: not installed)
    kill_modes: dict[str, str] = field(default_factory=dict)   # unit -> its KillMode (absent: not installed)

    def live(self, release: str | None = None) -> None:
        release = release or "r0"
        self.releases[release] = True
        self.current = release
        self.activations.append((release, None))


class _FakeBegun(Begun):
    """Never begun on a host: run whole once finished; its finish or cancel is an event."""

    def finish(self, tail: bytes, timeout=None, description=None) -> Result:
        self.fleet._event("finish begun", self.target.name)
        return super().finish(tail, timeout, description)

    def cancel(self) -> None:
        self.fleet._event("cancel begun", self.target.name)


class FakeFleet(Fleet):
    """A :class:`Fleet` whose hosts are :class:`FakeHost` objects.

    ``fail_command(predicate)`` makes matching non-agent commands exit 1 (a
    command whose description ends with ``finish release ID`` marks the release complete, as the real one
    does); ``interrupt(predicate)`` makes a matching agent request raise
    KeyboardInterrupt, as Ctrl-C does in the thread that waits on it.
    """

    def __init__(self, targets, hosts: dict[str, FakeHost]):
        super().__init__(targets, SSHOptions(ssh_config=None, parallel=10))
        self.hosts = hosts
        self.events: list[tuple] = []
        self._events_lock = threading.Lock()
        self._failing: list[Callable[[str, str], bool]] = []
        self._interrupting: list[Callable[[str, dict], bool]] = []

    # -- test controls -----------------------------------------------------

    def fail_command(self, predicate: Callable[[str, str], bool]) -> None:
        """Commands whose (host, description) match exit 1."""
        self._failing.append(predicate)

    def interrupt(self, predicate: Callable[[str, dict], bool]) -> None:
        self._interrupting.append(predicate)

    def happened(self, kind: str) -> list[tuple]:
        return [e for e in self.events if e[0] == kind]

    def _event(self, *event) -> None:
        with self._events_lock:
            self.events.append(event)

    # -- the transport -----------------------------------------------------

    def connection(self, target):
        raise AssertionError("a fake fleet never opens an SSH connection")

    def run(self, target, command, *, timeout=None, check=False) -> Result:
        target = self._target(target)
        self._count(target.name)
        host = self.hosts[target.name]
        argv = tuple(command.argv)
        if argv == agent_argv(AGENT_SOURCE):
            request = agent_request(command)
            if any(p(target.name, request) for p in self._interrupting):
                raise KeyboardInterrupt
            answer = getattr(self, "_op_" + request["op"], None)
            if answer is None:
                raise AssertionError(f"the fake fleet does not model the agent op {request['op']!r}")
            return Result(target.name, command.description, 0, stdout=json.dumps(answer(host, request)))
        described = command.description or " ".join(argv)
        self._event("command", target.name, described)
        code = 1 if any(p(target.name, described) for p in self._failing) else 0
        if code == 0 and "finish release " in described:
            host.releases[described.rsplit("finish release ", 1)[1]] = True
        return Result(target.name, command.description or argv[0], code,
                      stderr="" if code == 0 else "failed on purpose by the test")

    def begin(self, target, command) -> Begun:
        """A command begun ahead (an agent awaiting its request): run whole, through run, once finished."""
        target = self._target(target)
        self._event("begin", target.name)
        return _FakeBegun(self, target, command)

    def prepare_rsync(self, targets) -> None:
        for target in targets:
            self._event("prepare rsync", self._target(target).name)

    def rsync(self, target, local_dir, remote_dir, **options) -> RsyncResult:
        target = self._target(target)
        self._count(target.name)
        self._event("rsync", target.name, str(remote_dir))
        host = self.hosts[target.name]
        release = str(remote_dir).rstrip("/").rsplit("/", 1)[-1]
        if "/releases/" in str(remote_dir):
            host.releases.setdefault(release, False)
            manifest = Path(local_dir) / "release.json"
            if manifest.is_file():          # the digest travels in the release, as on a host
                built = json.loads(manifest.read_text())
                host.contents[release] = built.get("content")
                host.commits[release] = None if built.get("dirty", True) else built.get("git_sha")
        return RsyncResult(target.name, f"rsync {local_dir} -> {remote_dir}", 0, bytes_sent=1000,
                           files_transferred=10)

    # -- agent ops ---------------------------------------------------------

    def _op_inspect(self, host: FakeHost, request: dict) -> dict:
        answer = {"current": host.current, "exists": True, "free_bytes": 10 ** 10,
                  "releases": [{"id": r, "complete": done} for r, done in sorted(host.releases.items())],
                  "lock": host.lock, "activations": [list(pair) for pair in host.activations]}
        if request.get("content"):
            answer["content"] = host.contents.get(host.current) if host.current else None
            answer["commit"] = host.commits.get(host.current) if host.current else None
        if request.get("background"):
            answer["background"] = host.background
        if request.get("workdirs"):
            answer["workdirs"] = {unit: host.workdirs.get(unit) for unit in request["workdirs"]}
            answer["kill_modes"] = {unit: host.kill_modes.get(unit) for unit in request["workdirs"]}
        if request.get("python"):
            answer["interpreter"] = {"version": host.python, "machine": "x86_64", "glibc": "2.41"}
        return answer

    def _op_status(self, host: FakeHost, request: dict) -> dict:
        units = {unit: {"state": "active", "sub": "running", "loaded": "loaded", "uptime": 60.0}
                 for unit in request["units"]}
        return {"current": host.current, "free_bytes": 10 ** 10, "units": units, "drained": False,
                "ready": "healthy" if request.get("health") else None}

    def _op_lock(self, host: FakeHost, request: dict) -> dict:
        if host.lock is not None:
            return {"ok": False, "holder": host.lock}
        host.lock = request["holder"]
        self._event("lock", host.name)
        if request.get("drain_flag"):
            return {"ok": True, "drained": request["drain_flag"] in host.files}
        return {"ok": True}

    def _op_unlock(self, host: FakeHost, request: dict) -> dict:
        if host.lock is not None and host.lock.get("token") == request["token"]:
            host.lock = None
            self._event("unlock", host.name)
            return {"ok": True}
        return {"ok": False}

    def _op_checkfacts(self, host: FakeHost, request: dict) -> dict:
        # A host the checks cannot judge: no release read, nothing running, no env file.
        return {"current": None, "manifest": None, "frontend": None, "env": None, "units": {}, "beat": "",
                "nginx": None, "certificate": None, "drained": False, "os": None}

    def _op_facts(self, host: FakeHost, request: dict) -> dict:
        if request.get("packages") or request.get("users") or request.get("services") or request.get("checks"):
            raise AssertionError("the fake fleet models file facts only")
        paths = {}
        for path in request.get("paths", {}):
            content = host.files.get(path)
            paths[path] = {"type": "absent"} if content is None else \
                dict(zip(("owner", "group", "mode"), host.owners.get(path, ("root", "root", "0644"))),
                     type="file", sha256=hashlib.sha256(content).hexdigest())
        return {"packages": {}, "users": {}, "paths": paths, "services": {}, "checks": {}}

    def _op_apply(self, host: FakeHost, request: dict) -> dict:
        for action in request["actions"]:
            if action["kind"] == "file":
                host.files[action["path"]] = base64.b64decode(action["content"])
                host.owners[action["path"]] = (action["owner"], action.get("group") or action["owner"], action["mode"])
                self._event("file", host.name, action["path"])
            elif action["kind"] == "absent":
                host.files.pop(action["path"], None)
                self._event("absent", host.name, action["path"])
            else:
                raise AssertionError(f"the fake fleet does not model the action {action['kind']!r}")
        return {"ok": True}

    def _op_activate(self, host: FakeHost, request: dict) -> dict:
        drain = request.get("drain")
        if drain and drain.get("note"):
            host.files[drain["flag"]] = base64.b64decode(drain["note"])
            self._event("file", host.name, drain["flag"])
        outcome = self._activate(host, request)
        if drain and (outcome["ok"] or outcome.get("reverted")) and drain["flag"] in host.files:
            del host.files[drain["flag"]]
            self._event("absent", host.name, drain["flag"])
        outcome["drained"] = bool(drain) and drain["flag"] in host.files
        outcome["took"] = 0.25      # as a host says how long its own part took
        return outcome

    def _activate(self, host: FakeHost, request: dict) -> dict:
        background = request.get("background")
        release = request["release"]
        previous = host.background if background else host.current
        moves_current = not background or background["moves_current"]
        self._event("activate", host.name, release, tuple(request["restart"]))
        healthy = host.releases.get(release) and release not in host.unhealthy
        # A web tier starts the release in its idle slot: the serving one is replaced only once it passed.
        if healthy or not request.get("web"):
            for unit in request["restart"]:
                host.units[unit] = dict(host.env_file)
        if healthy:
            if background:
                host.background = release
            if moves_current:
                host.current = release
                host.activations.append((release, previous))
            return {"ok": True, "release": release, "previous": previous, "status": "healthy"}
        outcome = {"ok": False, "reason": f"{release} is not healthy", "release": release, "previous": previous}
        if request.get("web"):
            outcome.update(kept=bool(previous), reverted=bool(previous))
        elif previous and previous != release:
            self._event("activate", host.name, previous, tuple(request["restart"]))
            outcome["reverted"] = True
        return outcome

    def _op_audit(self, host: FakeHost, request: dict) -> dict:
        host.audit.append(request["entry"])
        self._event("audit", host.name, request["entry"]["result"])
        return {"ok": True}

    def _op_prune(self, host: FakeHost, request: dict) -> dict:
        return {"removed": []}

    def _op_together(self, host: FakeHost, request: dict) -> dict:
        answers = []
        for each in request["requests"]:
            answer = getattr(self, "_op_" + each["op"], None)
            if answer is None:
                raise AssertionError(f"the fake fleet does not model the agent op {each['op']!r}")
            answers.append({"answer": answer(host, each)})
        return {"answers": answers}

    def _op_keystate(self, host: FakeHost, request: dict) -> dict:
        name = request["name"]
        units = {u: {"running": u in host.units, "fingerprint": agent.key_fingerprint(name, host.units.get(u, {}).get(name))}
                 for u in request["units"]}
        return {"current": host.current, "file": agent.key_fingerprint(name, host.env_file.get(name)), "units": units}

    def _op_setenv(self, host: FakeHost, request: dict) -> dict:
        name = request["name"]
        if name not in host.env_file:
            return {"ok": False, "error": f"{request['env_file']} has no {name} line"}
        host.env_file[name] = agent._env_line_value(request["line"], name)
        self._event("setenv", host.name, name)
        return {"ok": True, "file": agent.key_fingerprint(name, host.env_file[name])}
