"""The typed client of the host agents: one builder per op, one parser per answer.

Every request smship sends to :mod:`smship.remote.agent` (and to the db
host's :mod:`smship.remote.pgagent`) is built here, and every answer is
read here into a dataclass, so the protocol's field names live in this
file and in the agents alone.  A builder returns a :class:`Request`, a pure
value tests can compare; :func:`ask` runs it on one host and
:func:`ask_all` on many, returning the fleet's
:class:`~smship.ssh.FleetResult`.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Generic, Iterable, TypeVar

from smship.errors import SmshipError
from smship.hostos import HostOS, python_packages, requested_python
from smship.remote import AGENT_SOURCE, PG_AGENT_SOURCE, AgentsAhead, call_agent

T = TypeVar("T")


@dataclass(frozen=True)
class Request(Generic[T]):
    """One agent request: its op and fields, and how to read its answer."""
    op: str
    fields: dict[str, Any]
    parse: Callable[[str, dict[str, Any]], T] = field(compare=False, repr=False)
    timeout: float = 900
    source: str = field(default=AGENT_SOURCE, compare=False, repr=False)
    # Changes nothing on the host: asked again when its agent is lost (see smship.remote.call_agent).
    read_only: bool = field(default=False, compare=False)

    def body(self) -> dict[str, Any]:
        return {"op": self.op, **self.fields}

    def read(self, host: str, answer: Any) -> T:
        """The parsed answer; one that lacks a field raises :class:`SmshipError` naming the host and op."""
        try:
            return self.parse(host, answer)
        except KeyError as exc:
            problem = f"has no field {exc}"
        except (TypeError, ValueError, AttributeError) as exc:
            problem = f"has a field of the wrong shape ({exc})"
        # The agent travels with every request, so the two sides cannot differ in version: a bug.
        raise SmshipError(f"{host}: the smship agent's {self.op} answer {problem}; report this as a bug in smship")


def ask(fleet, target, request: Request[T], ahead: AgentsAhead | None = None) -> T:
    """Run ``request`` on ``target`` (on the agent ``ahead`` began there, if any); its parsed answer, or
    :class:`SmshipError` naming the host."""
    begun = ahead.take(target.name) if ahead is not None and request.source == AGENT_SOURCE else None
    return request.read(target.name, call_agent(fleet, target, request.body(), timeout=request.timeout,
                                                source=request.source, read_only=request.read_only, begun=begun))


def ask_all(fleet, request: Request[T] | Callable[[Any], Request[T]], targets: Iterable | None = None,
            waiting: Callable[[list[str], float], None] | None = None, ahead: AgentsAhead | None = None):
    """``request`` (or ``request(target)``, one per host) on every target in parallel: a FleetResult
    (``waiting``: see Fleet.map; ``ahead``: see ask)."""
    build = (lambda _: request) if isinstance(request, Request) else request
    return fleet.map(lambda t: ask(fleet, t, build(t), ahead), targets, waiting=waiting)


def together(requests: list[Request]) -> Request[list]:
    """``requests`` answered by one agent on one host, in order: a list of their answers, each read by its
    own request, or the :class:`SmshipError` of one that failed there (the others still ran)."""
    if not requests or any(r.source != AGENT_SOURCE for r in requests):
        raise ValueError("together takes one or more requests of the host agent")

    def parse(host: str, answer: dict[str, Any]) -> list:
        answers = answer["answers"]
        if len(answers) != len(requests):
            raise ValueError(f"{len(answers)} answers to {len(requests)} requests")
        return [request.read(host, each["answer"]) if "answer" in each else
                SmshipError(f"{host}: the smship agent's {request.op} failed: {each['failed']}")
                for request, each in zip(requests, answers)]
    return Request("together", {"requests": [r.body() for r in requests]}, parse,
                   max(r.timeout for r in requests), read_only=all(r.read_only for r in requests))


# -- releases, lock and audit --------------------------------------------------

@dataclass(frozen=True)
class Interpreter:
    """The app's Python on a host: what a release's wheels must fit."""
    version: str | None
    machine: str
    glibc: str


@dataclass(frozen=True)
class LockHolder:
    """Who holds a deploy lock: the record smship wrote into it (smship.steps.lock.new_holder)."""
    token: str | None = None
    user: str | None = None
    machine: str | None = None
    pid: Any = None                      # an int from smship; anything else names no process
    boot_id: str | None = None
    since: float | None = None           # epoch seconds
    command: str | None = None           # "deploy prod", "provision prod"...

    def record(self) -> dict[str, Any]:
        """As the lock keeps it on the host."""
        return asdict(self)


def lock_holder(record: dict[str, Any] | None) -> LockHolder:
    """A holder as the host kept it; a field missing (an unreadable or foreign lock) is None."""
    record = record or {}
    return LockHolder(**{name: record.get(name) for name in LockHolder.__dataclass_fields__})


@dataclass(frozen=True)
class Inspection:
    current: str | None
    releases: list[str]
    complete: list[str]                  # the releases shipped whole
    free_bytes: int
    # (release, the release live before it) for each release that went live
    # here, oldest first; None: no record (only an older smship deployed).
    activations: list[tuple[str, str | None]] | None = None
    interpreter: Interpreter | None = None
    lock: LockHolder | None = None       # None: not locked; a lock without a readable holder has no token
    exists: bool = True                  # the app's root directory
    # The live release's content digest (release.json's "content"), asked for with ``content``;
    # None: not asked, nothing live, or a release built before the digest was recorded.
    content: str | None = None
    # The git commit the live release was built from, asked for with ``content``; None for a
    # working tree's build (or when not asked, or nothing is live).
    commit: str | None = None
    # The release the worker and beat run from (Layout.background_release), asked for with
    # ``background``; None: not asked, or no such link (a host without them, or not deployed yet).
    background: str | None = None
    # Where each unit asked for with ``workdirs`` runs from (its WorkingDirectory); None: not installed.
    workdirs: dict[str, str | None] = field(default_factory=dict)
    # And each one's KillMode (which processes its stop signals); None: not installed.
    kill_modes: dict[str, str | None] = field(default_factory=dict)


def _inspection(_host: str, answer: dict[str, Any]) -> Inspection:
    found = answer.get("interpreter")
    return Inspection(
        current=answer["current"], releases=[r["id"] for r in answer["releases"]],
        complete=[r["id"] for r in answer["releases"] if r["complete"]],
        lock=lock_holder(answer["lock"]) if answer["lock"] is not None else None,
        free_bytes=answer["free_bytes"], exists=answer["exists"], content=answer.get("content"),
        commit=answer.get("commit"), background=answer.get("background"), workdirs=answer.get("workdirs") or {},
        kill_modes=answer.get("kill_modes") or {},
        activations=[tuple(pair) for pair in answer["activations"]] if answer.get("activations") is not None else None,
        interpreter=Interpreter(found["version"], found["machine"], found["glibc"]) if found else None)


def inspect(root: str, lock: str, activation_log: str | None = None, python: str | None = None,
            timeout: float = 900, content: bool = False, background: str | None = None,
            workdirs: list[str] = ()) -> Request[Inspection]:
    """The releases, the live one, the lock, free space; with ``python``, that interpreter; with
    ``content``, the live release's content digest and commit; with ``background`` (a link's path),
    the release it names; with ``workdirs`` (units), where each runs from and its KillMode."""
    fields: dict[str, Any] = {"root": root, "lock": lock}
    if background is not None:
        fields["background"] = background
    if workdirs:
        fields["workdirs"] = list(workdirs)
    if content:
        fields["content"] = True
    if activation_log is not None:
        fields["activation_log"] = activation_log
    if python is not None:
        fields["python"] = python
    return Request("inspect", fields, _inspection, timeout, read_only=True)


@dataclass(frozen=True)
class LockAnswer:
    ok: bool
    holder: LockHolder        # who holds the lock when ``ok`` is false (all None when unreadable)
    error: str = ""           # the lock could not be written at all (a full disk, say)
    drained: bool = False     # asked with ``drain_flag``: the lock was taken on a host out of the lb


def _lock_answer(_host: str, answer: dict[str, Any]) -> LockAnswer:
    return LockAnswer(answer["ok"], lock_holder(answer.get("holder")), answer.get("error") or "",
                      bool(answer.get("drained")))


def lock(path: str, holder: LockHolder, drain_flag: str | None = None) -> Request[LockAnswer]:
    """With ``drain_flag``, whether the host is drained from the lb too, as the lock finds it."""
    fields: dict[str, Any] = {"path": path, "holder": holder.record()}
    if drain_flag is not None:
        fields["drain_flag"] = drain_flag
    return Request("lock", fields, _lock_answer)


def unlock(path: str, token: str | None, force: bool = False) -> Request[LockAnswer]:
    fields: dict[str, Any] = {"path": path, "token": token}
    if force:
        fields["force"] = True
    return Request("unlock", fields, _lock_answer)


@dataclass(frozen=True)
class Audited:
    ok: bool
    error: str = ""           # why root refused to write the line (a link, a directory others can write)


def audit(path: str, entry: dict, timeout: float = 900) -> Request[Audited]:
    """Append ``entry`` as one JSON line to the host's audit log."""
    return Request("audit", {"path": path, "entry": entry},
                   lambda _, a: Audited(bool(a.get("ok", True)), a.get("error") or ""), timeout)


@dataclass(frozen=True)
class Pruned:
    removed: list[str]


def prune(root: str, keep: int, protect: list[str], links: list[str] = ()) -> Request[Pruned]:
    """Remove all but the ``keep`` newest releases, never ``current``'s, one in ``protect`` or one a path
    in ``links`` points at."""
    return Request("prune", {"root": root, "keep": keep, "protect": list(protect), "links": list(links)},
                   lambda _, a: Pruned(list(a["removed"])))


@dataclass(frozen=True)
class Activation:
    ok: bool
    release: str
    previous: str | None
    status: str | None = None          # what the ready endpoint said, when healthy
    reason: str | None = None          # why it failed
    reverted: bool | None = None       # whether the previous release is healthy again (failures only)
    revert_reason: str | None = None
    record_error: str | None = None    # the activation log could not be written
    untouched: bool = False            # failed before anything was switched or restarted
    drained: bool = False              # out of the lb after it (asked to drain, not back in)
    undrain_error: str | None = None   # why it could not be put back in
    took: float | None = None          # seconds on the host, restart and gate included
    kept: bool = False                 # a web slot that failed its gate: the serving slot never stopped
    stop_error: str | None = None      # a web or worker slot that could not be stopped
    reload_error: str | None = None    # systemd could not reload after the slots' boot links changed


def _activation(_host: str, answer: dict[str, Any]) -> Activation:
    return Activation(answer["ok"], answer["release"], answer.get("previous"), answer.get("status"),
                      answer.get("reason"), answer.get("reverted"), answer.get("revert_reason"),
                      answer.get("record_error"), bool(answer.get("untouched")), bool(answer.get("drained")),
                      answer.get("undrain_error"), answer.get("took"), bool(answer.get("kept")),
                      answer.get("stop_error"), answer.get("reload_error"))


def activate(root: str, release: str, units: list[str], health: dict | None, activation_log: str | None,
             timeout: float = 900, ready: dict[str, str] | None = None, drain_flag: str | None = None,
             drain_note: str | None = None, web: dict | None = None,
             background: dict | None = None, worker: dict | None = None) -> Request[Activation]:
    """Switch ``current``, restart ``units``, gate on ``health`` (or, without it, watch the units stay up;
    ``ready`` maps a unit to the line it logs once it works, which shortens the watch); the host reverts
    itself on failure. With ``web`` (Layout.web_slots) the release starts in the idle web slot instead,
    and the serving one stops only once it passed. With ``drain_flag`` (a web host behind an lb) the host
    puts itself back in the lb once it serves a healthy release; with ``drain_note`` too, it drains itself
    first. With ``background`` (:func:`background_link`) the units run from a link of their own, switched
    instead of ``current``; with ``worker`` (Layout.worker_slots) the worker among them starts in its idle
    slot, and the serving one is asked to stop only once the new one works."""
    fields = {"root": root, "release": release, "restart": units, "health": health, "activation_log": activation_log}
    if web:
        fields["web"] = web
    if background:
        fields["background"] = background
    if worker:
        fields["worker"] = worker
    if ready:
        fields["ready"] = ready
    if drain_flag:
        fields["drain"] = {"flag": drain_flag,
                           "note": base64.b64encode(drain_note.encode()).decode() if drain_note else None}
    return Request("activate", fields, _activation, timeout)


def background_link(path: str, moves_current: bool) -> dict[str, Any]:
    """How the worker and beat take a release: their link ``path`` (Layout.background_release) moves; so
    does ``current`` when ``moves_current`` (a host without a web tier, whose live release they are)."""
    return {"link": path, "moves_current": moves_current}


def health_gate(health, domain: str, unit: str) -> dict[str, Any]:
    """What the agent gates a web slot on: the environment's ``health`` settings (inventory), asked of
    ``unit`` as nginx would ask it for ``domain``."""
    return {"unit": unit, "port": 443, "host": domain, "live": health.live.model_dump(),
            "ready": health.ready.model_dump(), "timeout": health.timeout,
            "accept_degraded": health.accept_degraded}


def web_slot_restart(root: str, web: dict, health: dict, label: str) -> dict[str, Any]:
    """An ``apply`` action: the web tier restarted through its slots on the live release, as a deploy
    switches them (see :func:`activate`), gated on ``health`` (:func:`health_gate`); nothing where no
    slot serves. A new slot that fails its gate fails the apply, the serving one still serving."""
    return {"kind": "web slots", "root": root, "web": web, "health": health, "label": label}


def worker_slot_restart(root: str, worker: dict, ready: str, label: str) -> dict[str, Any]:
    """An ``apply`` action: the Celery worker restarted through its slots on the serving worker's
    release, as a deploy switches them (see :func:`activate`): the new one takes over once it logged
    ``ready``, the old one finishes its tasks on its own time; nothing where no worker slot runs. A new
    slot that fails fails the apply, the serving one never stopped."""
    return {"kind": "worker slots", "root": root, "worker": worker, "ready": ready, "label": label}


@dataclass(frozen=True)
class UnitStatus:
    state: str
    sub: str
    loaded: str
    uptime: float | None
    idle: bool = False      # a slot that does not serve, its process still running (an old one ending)


@dataclass(frozen=True)
class HostStatus:
    current: str | None
    free_bytes: int
    units: dict[str, UnitStatus]
    ready: str | None
    drained: bool
    answer: dict = field(repr=False, compare=False)     # as the host said it, for --json output
    background: str | None = None       # the release the worker and beat run from (asked with ``background``)


def _host_status(_host: str, answer: dict[str, Any]) -> HostStatus:
    units = {name: UnitStatus(u["state"], u["sub"], u["loaded"], u["uptime"], bool(u.get("idle")))
             for name, u in answer["units"].items()}
    return HostStatus(answer["current"], answer["free_bytes"], units, answer["ready"], bool(answer.get("drained")),
                      answer, answer.get("background"))


def status(root: str, lock: str, units: list[str], health: dict | None, drain_flag: str | None,
           timeout: float = 900, web: dict | None = None, background: str | None = None,
           postgres_unit: str | None = None, worker: dict | None = None) -> Request[HostStatus]:
    """``web`` (Layout.web_slots, on a web host): the web units' template names stand for the serving slot's;
    so does the worker's with ``worker`` (Layout.worker_slots, on a worker host);
    ``background`` (Layout.background_release, on a worker or beat host): the release that link names;
    ``postgres_unit`` (``postgresql@%s-main.service``, one of ``units``): the cluster's unit, its major read
    by the host in the same round trip."""
    fields = {"root": root, "lock": lock, "units": units, "health": health, "drain_flag": drain_flag}
    optional = {"web": web, "background": background, "postgres_unit": postgres_unit, "worker": worker}
    return Request("status", fields | {k: v for k, v in optional.items() if v}, _host_status, timeout, read_only=True)


# -- key rotation --------------------------------------------------------------

@dataclass(frozen=True)
class UnitKey:
    running: bool
    fingerprint: str | None


@dataclass(frozen=True)
class KeyState:
    current: str | None
    file: str | None                       # the env file's generation (fingerprint)
    units: dict[str, UnitKey]              # what each unit's running process holds

    def running(self) -> set[str | None]:
        return {u.fingerprint for u in self.units.values() if u.running}

    def holds(self, fingerprint: str | None) -> bool:
        """The env file and every running unit have this generation."""
        return self.file == fingerprint and self.running() <= {fingerprint}


def keystate(name: str, root: str, env_file: str, units: list[str], timeout: float = 900,
             web: dict | None = None, worker: dict | None = None) -> Request[KeyState]:
    """``web`` (Layout.web_slots, on a web host): the web units' template names stand for the serving slot's;
    so does the worker's with ``worker`` (Layout.worker_slots, on a worker host)."""
    fields = {"name": name, "root": root, "env_file": env_file, "units": units}
    optional = {"web": web, "worker": worker}
    return Request("keystate", fields | {k: v for k, v in optional.items() if v},
                   lambda _, a: KeyState(a["current"], a["file"],
                                         {u: UnitKey(s["running"], s["fingerprint"]) for u, s in a["units"].items()}),
                   timeout, read_only=True)


@dataclass(frozen=True)
class EnvLineSet:
    ok: bool
    error: str | None
    file: str | None                       # the env file's generation after the write


def setenv(env_file: str, name: str, line: str, timeout: float = 900) -> Request[EnvLineSet]:
    """Replace the ``name=`` line of the env file; the line (a secret) travels on stdin with the request."""
    return Request("setenv", {"env_file": env_file, "name": name, "line": line},
                   lambda _, a: EnvLineSet(a["ok"], a.get("error"), a.get("file")), timeout)


# -- the role engine: facts, then the changes ----------------------------------

@dataclass(frozen=True)
class PathFact:
    type: str                              # absent, file, dir or link
    owner: str | None = None
    group: str | None = None
    mode: str | None = None
    sha256: str | None = None
    content: str | None = None             # a non-secret file's old text, when it differs
    target: str | None = None              # a link's


@dataclass(frozen=True)
class ServiceFact:
    enabled: str
    active: str


@dataclass(frozen=True)
class HostFacts:
    packages: dict[str, bool]
    users: dict[str, dict | None]          # None: no such user
    paths: dict[str, PathFact]
    services: dict[str, ServiceFact]
    checks: dict[str, bool]
    pending_handlers: list[str]            # owed by an earlier, interrupted apply
    hostos: HostOS | None = None           # when asked with the facts (see facts())


def _host_facts(host: str, answer: dict[str, Any]) -> HostFacts:
    return HostFacts(dict(answer["packages"]), dict(answer["users"]),
                     {path: PathFact(**fact) for path, fact in answer["paths"].items()},
                     {name: ServiceFact(s["enabled"], s["active"]) for name, s in answer["services"].items()},
                     dict(answer["checks"]), list(answer.get("pending_handlers", [])),
                     _host_os(host, answer["hostos"]) if "hostos" in answer else None)


def facts(paths: dict[str, str | None], packages: list[str] = (), users: list[str] = (), services: list[str] = (),
          checks: dict[str, dict] | None = None, timeout: float = 900,
          hostos: Request[HostOS] | None = None) -> Request[HostFacts]:
    """What the host has; a path's expected sha256 (None for secrets) brings back its differing old text.

    With ``hostos`` (a :func:`hostos` request) the answer also carries what that
    request would have answered, in the same round trip.
    """
    fields: dict[str, Any] = {"packages": list(packages), "users": list(users), "paths": paths,
                              "services": list(services), "checks": checks or {}}
    if hostos is not None:
        fields["hostos"] = dict(hostos.fields)
    return Request("facts", fields, _host_facts, timeout, read_only=True)


@dataclass(frozen=True)
class Applied:
    ok: bool
    done: list[str]
    failed: str | None = None              # the action that failed
    error: str | None = None
    hostos: HostOS | None = None           # after applying, when asked (see apply())


# How long an apply may take on a host, its handlers' restarts included (a role may ask for more).
APPLY_TIMEOUT = 900


def apply(actions: list[dict], handlers: list[str] = (), timeout: float = APPLY_TIMEOUT,
          hostos: Request[HostOS] | None = None) -> Request[Applied]:
    """Run ``actions`` in order, stopping at the first failure; ``handlers`` are owed until they ran.

    With ``hostos`` (a :func:`hostos` request), a run that succeeded also answers
    it, as the host is after applying.
    """
    fields: dict[str, Any] = {"actions": actions}
    if handlers:
        fields["handlers"] = list(handlers)
    if hostos is not None:
        fields["hostos"] = dict(hostos.fields)
    return Request("apply", fields, lambda host, a: Applied(
        a["ok"], list(a.get("done", [])), a.get("failed"), a.get("error"),
        _host_os(host, a["hostos"]) if "hostos" in a else None), timeout)


# -- what a host is --------------------------------------------------------------

def _host_os(host: str, answer: dict[str, Any]) -> HostOS:
    return HostOS(host=host, distro=answer.get("id", ""), version_id=answer.get("version_id", ""),
                  codename=answer.get("codename", ""), pretty=answer.get("name", ""),
                  machine=answer.get("machine", "x86_64"), glibc=answer.get("glibc", ""),
                  python_path=answer["python"]["path"], python_version=answer["python"]["version"],
                  postgres_clusters=tuple(answer["postgres"]["clusters"]),
                  postgres_installed=tuple(answer["postgres"]["installed"]),
                  nginx_installed=answer.get("nginx"), candidates=dict(answer.get("candidates", {})),
                  ssh_ports=tuple(answer.get("ssh_ports", ())))


def hostos(app, timeout: float = 60, packages: tuple[str, ...] = ()) -> Request[HostOS]:
    """The distribution, the app's interpreter, Postgres, nginx and what apt offers for them
    (and for ``packages``)."""
    fields: dict[str, Any] = {"python": app.interpreter}
    asked = (python_packages(app) if requested_python(app) else []) + list(packages)
    if asked:
        fields["packages"] = asked
    return Request("hostos", fields, _host_os, timeout, read_only=True)


# -- smship check: one round trip per host -------------------------------------

@dataclass(frozen=True)
class EnvFileChecks:
    """A host's env file as the checks judge it: plain settings by value, secrets by verdict only."""
    values: dict[str, str]
    database_scheme: str | None            # the database URL's scheme; None when it is not set
    secret_key_weakness: str | None        # why the signing key is weak; None when it is strong
    error: str | None = None               # the file could not be read (the other fields are empty)


@dataclass(frozen=True)
class UnitChecks:
    state: str
    sub: str
    loaded: str
    exec_start: str                        # as systemd has it configured
    cmdline: list[str] | None              # the running main process's, when there is one
    sm010: str | None                      # the first SM010 line in its journal since its last start


@dataclass(frozen=True)
class OSRelease:
    id: str
    version_id: str
    name: str
    python: str | None                     # the app's interpreter's version, when asked and found


@dataclass(frozen=True)
class LogMarker:
    """The marker line an app host logged for its collector to receive."""
    logged: bool
    error: str
    uploader: str                          # systemctl is-active of the journal uploader


@dataclass(frozen=True)
class HostChecks:
    """Everything ``smship check`` reads from one host."""
    current: str | None
    alembic_heads: list[str] | None        # the live release's; None without a readable manifest
    frontend: bool | None                  # the built front end's manifest is in the live release
    env: EnvFileChecks | None              # None on hosts without the app's env file
    units: dict[str, UnitChecks]
    beat: str                              # the beat unit's systemctl is-active
    nginx: str | None                      # nginx -T's output
    nginx_error: str | None                # why nginx -T failed
    certificate: str | None                # the served certificate's PEM, on web and lb hosts
    drained: bool
    os: OSRelease | None
    log_marker: LogMarker | None = None    # with a logs section, on app hosts: the line logged for the collector

    def env_values(self) -> dict[str, str] | None:
        """The env file's plain settings; None when there is no env file or it could not be read."""
        return self.env.values if self.env is not None and self.env.error is None else None


def _env_file_checks(answer: dict[str, Any] | None) -> EnvFileChecks | None:
    if answer is None:
        return None
    if "error" in answer:
        return EnvFileChecks({}, None, None, error=str(answer["error"]))
    return EnvFileChecks(dict(answer["values"]), answer["database_scheme"], answer["secret_key_weakness"])


def _host_checks(_host: str, answer: dict[str, Any]) -> HostChecks:
    manifest, nginx, found = answer["manifest"], answer["nginx"], answer["os"]
    return HostChecks(
        current=answer["current"], alembic_heads=list(manifest["alembic_heads"]) if manifest else None,
        frontend=answer["frontend"], env=_env_file_checks(answer["env"]),
        units={name: UnitChecks(u["state"], u["sub"], u["loaded"], u["exec_start"], u["cmdline"], u["sm010"])
               for name, u in answer["units"].items()},
        beat=answer["beat"], nginx=nginx if isinstance(nginx, str) else None,
        nginx_error=nginx["error"] if isinstance(nginx, dict) else None, certificate=answer["certificate"],
        drained=bool(answer["drained"]),
        os=OSRelease(found["id"], found["version_id"], found["name"], found["python"]) if found else None,
        log_marker=LogMarker(**answer["log_marker"]) if answer.get("log_marker") else None)


def checkfacts(fields: dict[str, Any], timeout: float = 90) -> Request[HostChecks]:
    """Everything ``smship check`` reads from one host, in one round trip (fields: smship.checklist.facts)."""
    # Its log marker, written twice, is still one line the collector must show.
    return Request("checkfacts", fields, _host_checks, timeout, read_only=True)


def logmarkers(directory: str, tag: str, markers: list[str], wait: float) -> Request[set[str]]:
    """Which ``markers`` (lines logged with ``tag`` on the app hosts) the collector holds, waiting up to ``wait`` s."""
    def parse(host: str, answer: dict[str, Any]) -> set[str]:
        if answer["error"] and not answer["found"]:
            raise SmshipError(f"{host}: cannot read the collected journals: {answer['error']}")
        return set(answer["found"])
    return Request("logmarkers", {"directory": directory, "tag": tag, "markers": markers, "wait": wait},
                   parse, timeout=wait + 60)


# -- the db host's backup program ------------------------------------------------
# One builder per op of smship.remote.pgagent; each takes the stanza and the
# cluster first (smship.backuprepo), and a refusal raises naming the host.

def _db_answer(host: str, answer: dict[str, Any], verdict: bool = False) -> dict[str, Any]:
    """The answer, unless the program refused; with ``verdict``, ``ok: false`` without an
    ``error`` is the op's finding (unhealthy archiving), for the caller to explain."""
    if "error" in answer or not (answer.get("ok") or verdict):
        raise SmshipError(f"{host}: {answer.get('error', 'failed')}")
    return answer


def _db(op: str, stanza: str, cluster: Any, read: Callable[[dict[str, Any]], T], timeout: float,
        verdict: bool = False, **fields: Any) -> Request[T]:
    return Request(op, {"stanza": stanza, "cluster": cluster, **fields},
                   lambda host, a: read(_db_answer(host, a, verdict)), timeout, PG_AGENT_SOURCE)


@dataclass(frozen=True)
class ArchiveStatus:
    """WAL archiving on the db host: pg_stat_archiver, archive_mode and ``pgbackrest check``."""
    archive_mode: str
    failing: bool = False                  # the last failure is newer than the last success
    failed_count: int | None = None
    last_failed_wal: str | None = None
    last_failed_time: str | None = None
    last_archived_wal: str | None = None
    check_ok: bool = False
    check_output: str = ""


def archive_status(stanza: str, cluster: Any, timeout: float = 400) -> Request[ArchiveStatus]:
    return _db("archive_status", stanza, cluster, lambda a: ArchiveStatus(
        a["archive_mode"], bool(a["failing"]), a["failed_count"], a["last_failed_wal"], a["last_failed_time"],
        a["last_archived_wal"], bool(a["check_ok"]), a["check_output"]), timeout, verdict=True)


@dataclass(frozen=True)
class RestorePoint:
    name: str
    lsn: str


def restore_point(stanza: str, cluster: Any, name: str, timeout: float = 120) -> Request[RestorePoint]:
    return _db("restore_point", stanza, cluster, lambda a: RestorePoint(a["name"], a["lsn"]), timeout, name=name)


@dataclass(frozen=True)
class BackupTaken:
    label: str | None                      # the newest backup in the repository afterwards
    type: str | None
    seconds: float


def backup(stanza: str, cluster: Any, kind: str, timeout: float = 7500) -> Request[BackupTaken]:
    """A ``full``, ``diff`` or ``incr`` backup."""
    return _db("backup", stanza, cluster, lambda a: BackupTaken(a["label"], a["type"], a["seconds"]), timeout,
               type=kind)


@dataclass(frozen=True)
class BackupEntry:
    """One backup in the repository, as ``pgbackrest info`` lists it."""
    label: str | None
    type: str | None
    started: int | None                    # epoch seconds
    stopped: int | None
    database_size: int | None
    repository_size: int | None
    wal_start: str | None
    wal_stop: str | None
    error: bool


@dataclass(frozen=True)
class WalArchive:
    id: str | None
    min: str | None
    max: str | None


@dataclass(frozen=True)
class StanzaInfo:
    """``pgbackrest info`` for the stanza; an unknown stanza has no name and no backups."""
    name: str | None
    status_message: str | None
    status_code: int | None
    archives: list[WalArchive]
    backups: list[BackupEntry]             # oldest first


def _backup_entry(item: dict[str, Any]) -> BackupEntry:
    stamp, info, archive = item.get("timestamp") or {}, item.get("info") or {}, item.get("archive") or {}
    return BackupEntry(item.get("label"), item.get("type"), stamp.get("start"), stamp.get("stop"), info.get("size"),
                       (info.get("repository") or {}).get("size"), archive.get("start"), archive.get("stop"),
                       bool(item.get("error")))


def stanza_info(found: dict[str, Any]) -> StanzaInfo:
    """pgBackRest's own JSON (one stanza of ``pgbackrest --output=json info``), whose fields are all optional."""
    status = found.get("status") or {}
    return StanzaInfo(found.get("name"), status.get("message"), status.get("code"),
                      [WalArchive(a.get("id"), a.get("min"), a.get("max")) for a in found.get("archive", [])],
                      [_backup_entry(item) for item in found.get("backup", [])])


def info(stanza: str, cluster: Any, timeout: float = 300) -> Request[StanzaInfo]:
    return _db("info", stanza, cluster, lambda a: stanza_info(a["info"]), timeout)


@dataclass(frozen=True)
class VerifyResult:
    """The latest backup and all archived WAL, restored into a scratch cluster (dropped again)."""
    backup: str | None
    recovered_to: str                      # the last replayed commit; "": the backup itself
    rows: dict[str, int]                   # per table of the app's database
    last_segment: str
    seconds: float


def verify(stanza: str, cluster: Any, timeout: float = 4000) -> Request[VerifyResult]:
    return _db("verify", stanza, cluster, lambda a: VerifyResult(
        a["backup"], a["recovered_to"], dict(a["rows"]), a["last_segment"], a["seconds"]), timeout)


@dataclass(frozen=True)
class RestoreResult:
    recovered_to: str


def restore(stanza: str, cluster: Any, point: str | None = None, time: str | None = None,
            timeout: float = 7500) -> Request[RestoreResult]:
    """Restore the real cluster to the restore point ``point``, or else to ``time``."""
    fields = {"point": point} if point else {"time": time}
    return _db("restore", stanza, cluster, lambda a: RestoreResult(a["recovered_to"]), timeout, **fields)
