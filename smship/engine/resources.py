"""Desired state, as plain values: what a host should have.

Roles are declared in YAML; :mod:`smship.engine.roles` renders them into
these resources for one host, and :mod:`smship.engine.plan` compares them
with the facts gathered from the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smship.hostos import HostOS


@dataclass(frozen=True)
class User:
    name: str
    home: str
    shell: str = "/usr/sbin/nologin"
    system: bool = True
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Directory:
    path: str
    owner: str = "root"
    group: str = "root"
    mode: str = "0755"


@dataclass(frozen=True)
class File:
    path: str
    content: bytes = field(repr=False)
    owner: str = "root"
    group: str = "root"
    mode: str = "0644"
    # Secret files are compared by hash only: never diffed, never printed.
    secret: bool = False
    notify: tuple[str, ...] = ()


@dataclass(frozen=True)
class Link:
    path: str
    target: str
    notify: tuple[str, ...] = ()


@dataclass(frozen=True)
class Absent:
    path: str
    notify: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    name: str
    enabled: bool | None = None
    running: bool | None = None


@dataclass(frozen=True)
class Ensure:
    """State only a command can reach: ``check`` says whether it holds.

    ``check`` passes when it exits 0 and, if ``output`` is set, prints exactly
    that; it is fed ``check_stdin``.  Otherwise ``apply`` runs, fed ``stdin``.
    What is secret or derived from a secret, and SQL, travel on stdin, never
    on a command line.
    """

    name: str
    check: tuple[str, ...]
    apply: tuple[str, ...]
    output: str | None = None
    stdin: bytes | None = field(default=None, repr=False)
    notify: tuple[str, ...] = ()
    check_stdin: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class WebSlotRestart:
    """A handler step: the web tier's restart through its slots (a role's ``{web slots: restart}``).

    A plain restart of the serving slot keeps its requests waiting while the
    app imports; a new uvicorn started beside it on the live release and
    gated like a deploy's takes over only once healthy.  ``web`` is
    Layout.web_slots, ``health`` the agent's gate (client.health_gate).
    """

    root: str
    web: dict = field(hash=False)
    health: dict = field(hash=False)


@dataclass(frozen=True)
class WorkerSlotRestart:
    """A handler step: the Celery worker's restart through its slots (a role's ``{worker slots: restart}``).

    A plain restart of the serving slot waits for the tasks it runs (its warm
    shutdown, up to worker.stop_timeout) and takes none meanwhile; a new worker
    started beside it on the same release takes over once it logged ``ready``,
    and the old one finishes its tasks on its own time. ``worker`` is
    Layout.worker_slots, ``ready`` the line the new worker logs once it works.
    """

    root: str
    worker: dict = field(hash=False)
    ready: str


# One step of a handler: a command's argv, or a restart through the web or worker slots.
HandlerStep = tuple[str, ...] | WebSlotRestart | WorkerSlotRestart


@dataclass
class HostState:
    """Everything the roles of one host want, in the order it is applied."""

    roles: list[str] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    directories: list[Directory] = field(default_factory=list)
    files: list[File] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    absent: list[Absent] = field(default_factory=list)
    ensures: list[Ensure] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)
    handlers: dict[str, list[HandlerStep]] = field(default_factory=dict)
    # Seconds a role's handlers may take beyond the usual (a worker's warm shutdown waits for its tasks).
    handler_wait: float = 0
    postgres_major: int | None = None     # what the host's cluster runs (for commands after applying)
    hostos: HostOS | None = None          # what the host's distribution said, which rendered this state
