"""Which hosts run the app, and which systemd units a host's roles run: asked in one place."""

from __future__ import annotations

from typing import Iterable

from smship.inventory import Host
from smship.layout import Layout

APP_ROLES = ("web", "worker", "beat")
REDIS_UNIT = "redis-server.service"
NGINX_UNIT = "nginx.service"
# A Postgres cluster's own unit, by its major (Debian's postgresql.service only wraps it).
POSTGRES_CLUSTER_UNIT = "postgresql@%s-main.service"
# The worker unit's KillMode (templates/worker.service.j2): its stop signals Celery's main process alone,
# which lets the tasks its pool runs finish; systemd's default signals every process and kills them.
WORKER_KILL_MODE = "mixed"


def is_app_host(host: Host) -> bool:
    return bool(set(host.roles) & set(APP_ROLES))


def app_hosts(hosts: Iterable[Host]) -> list[Host]:
    return [h for h in hosts if is_app_host(h)]


def background_units(layout: Layout, roles: Iterable[str], pattern: bool = False) -> list[str]:
    """The Celery units: restarted after the web tier, watched instead of health-checked. The worker
    slots by their template name, which the agent reads as the serving slot's (see
    smship.remote.agent._units); ``pattern``: both slots', for systemctl stop or journalctl."""
    roles = set(roles)
    worker = layout.worker_units if pattern else layout.worker_service
    return ([worker] if "worker" in roles else []) + ([layout.beat_service] if "beat" in roles else [])


def ready_lines(layout: Layout, roles: Iterable[str], host_name: str) -> dict[str, str]:
    """What each Celery unit logs at INFO once it works: the worker, under the ``--hostname``
    templates/worker.service.j2 gives it, once connected and consuming; beat once its scheduler
    starts. The watch after their restart ends a moment after that line instead of after the whole
    settle time; a unit that never logs it (an app's own logging) is watched the whole time."""
    roles = set(roles)
    return ({layout.worker_service: f"{layout.app}@{host_name} ready."} if "worker" in roles else {}) | \
        ({layout.beat_service: "beat: Starting..."} if "beat" in roles else {})


def _web_units(layout: Layout, socket: bool, pattern: bool) -> list[str]:
    """The web slots' units by their template names, which the agent reads as the serving slot's
    (see smship.remote.agent._units); ``pattern``: both slots', for systemctl stop or journalctl."""
    if pattern:
        return ([layout.web_sockets] if socket else []) + [layout.web_units]
    return ([layout.web_socket] if socket else []) + [layout.web_service]


def app_units(layout: Layout, roles: Iterable[str], *, socket: bool = False, pattern: bool = False) -> list[str]:
    """The app's own units on a host with ``roles``; ``socket`` adds the web socket before the service."""
    roles = list(roles)
    web = _web_units(layout, socket, pattern)
    return (web if "web" in roles else []) + background_units(layout, roles, pattern)


def units_of(layout: Layout, roles: Iterable[str], *, postgres_unit: str = "postgresql@*",
             socket: bool = False, nginx_on_web: bool = False, pattern: bool = False) -> list[str]:
    """Every unit a host with ``roles`` runs, the data services and nginx included, each once.

    Debian's postgresql.service is an empty wrapper: the cluster's own unit (``postgresql@17-main``, or a
    pattern for journalctl) is the one that runs.
    """
    roles = list(roles)
    web = _web_units(layout, socket, pattern) + ([NGINX_UNIT] if nginx_on_web else [])
    by_role = {"web": web, "worker": background_units(layout, ["worker"], pattern), "beat": [layout.beat_service],
               "db": [postgres_unit, REDIS_UNIT], "lb": [NGINX_UNIT]}
    return list(dict.fromkeys(u for role in roles for u in by_role[role]))
