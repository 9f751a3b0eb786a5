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

from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterable, TypeVar

from smship.errors import SmshipError
from smship.hostos import HostOS, python_packages, requested_python
from smship.remote import AGENT_SOURCE, PG_AGENT_SOURCE, call_agent

T = TypeVar("T")


@dataclass(frozen=True)
class Request(Generic[T]):
    """One agent request: its op and fields, and how to read its answer."""
    op: str
    fields: dict[str, Any]
    parse: Callable[[str, dict[str, Any]], T] = field(compare=False, repr=False)
    timeout: float = 900
    source: str = field(default=AGENT_SOURCE, compare=False, repr=False)

    def body(self) -> dict[str, Any]:
        return {"op": self.op, **self.fields}


def ask(fleet, target, request: Request[T]) -> T:
    """Run ``request`` on ``target``; its parsed answer, or :class:`SmshipError` naming the host."""
    return request.parse(target.name, call_agent(fleet, target, request.body(), timeout=request.timeout,
                                                 source=request.source))


def ask_all(fleet, request: Request[T] | Callable[[Any], Request[T]], targets: Iterable | None = None):
    """``request`` (or ``request(target)``, one per host) on every target in parallel: a FleetResult."""
    build = (lambda _: request) if isinstance(request, Request) else request
    return fleet.map(lambda t: ask(fleet, t, build(t)), targets)


# -- releases, lock and audit --------------------------------------------------

@dataclass(frozen=True)
class Interpreter:
    """The app's Python on a host: what a release's wheels must fit."""
    version: str | None
    machine: str
    glibc: str


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
    lock: dict | None = None             # the lock holder's record; {"token": None} for a lock without one
    exists: bool = True                  # the app's root directory
    # The live release's content digest (release.json's "content"), asked for with ``content``;
    # None: not asked, nothing live, or a release built before the digest was recorded.
    content: str | None = None


def _inspection(_host: str, answer: dict[str, Any]) -> Inspection:
    found = answer.get("interpreter")
    return Inspection(
        current=answer["current"], releases=[r["id"] for r in answer["releases"]],
        complete=[r["id"] for r in answer["releases"] if r["complete"]], lock=answer["lock"],
        free_bytes=answer["free_bytes"], exists=answer["exists"], content=answer.get("content"),
        activations=[tuple(pair) for pair in answer["activations"]] if answer.get("activations") is not None else None,
        interpreter=Interpreter(found["version"], found["machine"], found["glibc"]) if found else None)


def inspect(root: str, lock: str, activation_log: str | None = None, python: str | None = None,
            timeout: float = 900, content: bool = False) -> Request[Inspection]:
    """The releases, the live one, the lock, free space; with ``python``, that interpreter; with
    ``content``, the live release's content digest."""
    fields: dict[str, Any] = {"root": root, "lock": lock}
    if content:
        fields["content"] = True
    if activation_log is not None:
        fields["activation_log"] = activation_log
    if python is not None:
        fields["python"] = python
    return Request("inspect", fields, _inspection, timeout)


@dataclass(frozen=True)
class LockAnswer:
    ok: bool
    holder: dict              # who holds the lock when ``ok`` is false ({} when unreadable)
    error: str = ""           # the lock could not be written at all (a full disk, say)


def _lock_answer(_host: str, answer: dict[str, Any]) -> LockAnswer:
    return LockAnswer(answer["ok"], answer.get("holder") or {}, answer.get("error") or "")


def lock(path: str, holder: dict) -> Request[LockAnswer]:
    return Request("lock", {"path": path, "holder": holder}, _lock_answer)


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


def prune(root: str, keep: int, protect: list[str]) -> Request[Pruned]:
    return Request("prune", {"root": root, "keep": keep, "protect": list(protect)},
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


def _activation(_host: str, answer: dict[str, Any]) -> Activation:
    return Activation(answer["ok"], answer["release"], answer.get("previous"), answer.get("status"),
                      answer.get("reason"), answer.get("reverted"), answer.get("revert_reason"),
                      answer.get("record_error"))


def activate(root: str, release: str, units: list[str], health: dict | None, activation_log: str | None,
             timeout: float = 900) -> Request[Activation]:
    """Switch ``current``, restart ``units``, gate on ``health``; the host reverts itself on failure."""
    return Request("activate", {"root": root, "release": release, "restart": units, "health": health,
                                "activation_log": activation_log}, _activation, timeout)


@dataclass(frozen=True)
class UnitStatus:
    state: str
    sub: str
    loaded: str
    uptime: float | None


@dataclass(frozen=True)
class HostStatus:
    current: str | None
    free_bytes: int
    units: dict[str, UnitStatus]
    ready: str | None
    drained: bool
    answer: dict = field(repr=False, compare=False)     # as the host said it, for --json output


def _host_status(_host: str, answer: dict[str, Any]) -> HostStatus:
    units = {name: UnitStatus(u["state"], u["sub"], u["loaded"], u["uptime"]) for name, u in answer["units"].items()}
    return HostStatus(answer["current"], answer["free_bytes"], units, answer["ready"], bool(answer.get("drained")),
                      answer)


def status(root: str, lock: str, units: list[str], health: dict | None, drain_flag: str | None,
           timeout: float = 900) -> Request[HostStatus]:
    return Request("status", {"root": root, "lock": lock, "units": units, "health": health,
                              "drain_flag": drain_flag}, _host_status, timeout)


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


def keystate(name: str, root: str, env_file: str, units: list[str], timeout: float = 900) -> Request[KeyState]:
    return Request("keystate", {"name": name, "root": root, "env_file": env_file, "units": units},
                   lambda _, a: KeyState(a["current"], a["file"],
                                         {u: UnitKey(s["running"], s["fingerprint"]) for u, s in a["units"].items()}),
                   timeout)


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


def _host_facts(_host: str, answer: dict[str, Any]) -> HostFacts:
    return HostFacts(dict(answer["packages"]), dict(answer["users"]),
                     {path: PathFact(**fact) for path, fact in answer["paths"].items()},
                     {name: ServiceFact(s["enabled"], s["active"]) for name, s in answer["services"].items()},
                     dict(answer["checks"]), list(answer.get("pending_handlers", [])))


def facts(paths: dict[str, str | None], packages: list[str] = (), users: list[str] = (), services: list[str] = (),
          checks: dict[str, dict] | None = None, timeout: float = 900) -> Request[HostFacts]:
    """What the host has; a path's expected sha256 (None for secrets) brings back its differing old text."""
    return Request("facts", {"packages": list(packages), "users": list(users), "paths": paths,
                             "services": list(services), "checks": checks or {}},
                   _host_facts, timeout)


@dataclass(frozen=True)
class Applied:
    ok: bool
    done: list[str]
    failed: str | None = None              # the action that failed
    error: str | None = None


def apply(actions: list[dict], handlers: list[str] = (), timeout: float = 900) -> Request[Applied]:
    """Run ``actions`` in order, stopping at the first failure; ``handlers`` are owed until they ran."""
    fields: dict[str, Any] = {"actions": actions}
    if handlers:
        fields["handlers"] = list(handlers)
    return Request("apply", fields, lambda _, a: Applied(a["ok"], list(a.get("done", [])), a.get("failed"),
                                                         a.get("error")), timeout)


# -- what a host is --------------------------------------------------------------

def _host_os(host: str, answer: dict[str, Any]) -> HostOS:
    return HostOS(host=host, distro=answer.get("id", ""), version_id=answer.get("version_id", ""),
                  codename=answer.get("codename", ""), pretty=answer.get("name", ""),
                  machine=answer.get("machine", "x86_64"), glibc=answer.get("glibc", ""),
                  python_path=answer["python"]["path"], python_version=answer["python"]["version"],
                  postgres_clusters=tuple(answer["postgres"]["clusters"]),
                  postgres_installed=tuple(answer["postgres"]["installed"]),
                  nginx_installed=answer.get("nginx"), candidates=dict(answer.get("candidates", {})))


def hostos(app, timeout: float = 60) -> Request[HostOS]:
    """The distribution, the app's interpreter, Postgres, nginx and what apt offers for them."""
    fields: dict[str, Any] = {"python": app.interpreter}
    if requested_python(app):
        fields["packages"] = python_packages(app)
    return Request("hostos", fields, _host_os, timeout)


def checkfacts(fields: dict[str, Any], timeout: float = 90) -> Request[dict]:
    """Everything ``smship check`` reads from one host, in one round trip (read by smship.checklist.facts)."""
    return Request("checkfacts", fields, lambda _, a: a, timeout)


# -- the db host's backup program ------------------------------------------------

def _db_answer(host: str, answer: dict[str, Any]) -> dict[str, Any]:
    if not answer.get("ok"):
        raise SmshipError(f"{host}: {answer.get('error', 'failed')}")
    return answer


def db(op: str, stanza: str, cluster: str, timeout: float = 900, **fields: Any) -> Request[dict]:
    """One request to the db host's backup program; a refusal raises naming the host."""
    return Request(op, {"stanza": stanza, "cluster": cluster, **fields}, _db_answer, timeout, PG_AGENT_SOURCE)
