"""What a host's distribution decides, read from the host and judged here.

Roles do not fork per distribution: the Postgres major and its paths, the
nginx directives and the interpreter the app's wheels are built for all
follow these facts, read by the agent's ``hostos`` request in one round trip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from smship.errors import SmshipError

# What the lab tests run on; anything else is refused by `smship check`'s hosts-os.
SUPPORTED = {("debian", "12"): "bookworm", ("debian", "13"): "trixie"}
# nginx 1.25.1 made `http2` a directive of its own and deprecated `listen ... http2`.
NGINX_HTTP2_DIRECTIVE = (1, 25, 1)
# The session cookie's Secure flag (proxy_cookie_flags) needs 1.19.3.
NGINX_MINIMUM = (1, 19, 3)
# PgBouncer 1.21 keeps each client's named prepared statements apart across the
# server connections transaction pooling lends (max_prepared_statements).
PGBOUNCER_PREPARED_STATEMENTS = (1, 21)


def debian_version(text: str | None) -> tuple[int, ...] | None:
    """(1, 26, 3) from '1.26.3', '1:1.26.3-3+deb13u1' or '17+278' (-> (17,))."""
    if not text:
        return None
    match = re.match(r"(?:\d+:)?(\d+(?:\.\d+)*)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class HostOS:
    host: str
    distro: str
    version_id: str
    codename: str
    pretty: str
    machine: str = "x86_64"
    glibc: str = ""
    python_path: str = "/usr/bin/python3"
    python_version: str | None = None        # full version of the app's interpreter, None if absent
    postgres_clusters: tuple[int, ...] = ()
    postgres_installed: tuple[int, ...] = ()
    nginx_installed: str | None = None
    ssh_ports: tuple[int, ...] = ()           # where sshd listens (its effective configuration)
    candidates: dict[str, str | None] = field(default_factory=dict, compare=False)

    @property
    def label(self) -> str:
        return self.pretty or f"{self.distro} {self.version_id}".strip() or "an unknown distribution"

    @property
    def supported(self) -> bool:
        return (self.distro, self.version_id) in SUPPORTED

    @property
    def python_minor(self) -> str | None:
        return ".".join(self.python_version.split(".")[:2]) if self.python_version else None

    def postgres_major(self, override: int | None) -> int:
        """The cluster's major: the inventory's, else the host's cluster, its server, what apt offers."""
        if override:
            return override
        for found in (self.postgres_clusters, self.postgres_installed):
            if found:
                return max(found)
        offered = debian_version(self.candidates.get("postgresql"))
        if offered:
            return offered[0]
        raise SmshipError(f"{self.host}: cannot tell which PostgreSQL to use: none is installed and apt "
                          f"offers no 'postgresql' package on {self.label} (run apt-get update there, or "
                          "set db.postgres_version)")

    def nginx_version(self) -> tuple[int, ...] | None:
        """The installed nginx, else the one apt would install."""
        return debian_version(self.nginx_installed) or debian_version(self.candidates.get("nginx"))

    def pgbouncer_version(self) -> tuple[int, ...] | None:
        """The PgBouncer apt installs or keeps (asked only when the inventory has a pooler)."""
        return debian_version(self.candidates.get("pgbouncer"))

    def pgbouncer_tracks_prepared_statements(self) -> bool:
        version = self.pgbouncer_version()
        return version is not None and version >= PGBOUNCER_PREPARED_STATEMENTS

    def nginx_facts(self) -> dict[str, Any]:
        """What templates gate directives on."""
        version = self.nginx_version() or NGINX_HTTP2_DIRECTIVE
        return {"version": dotted(version), "http2_directive": version >= NGINX_HTTP2_DIRECTIVE}


UNKNOWN_OS = HostOS(host="", distro="", version_id="", codename="", pretty="")


def requested_python(app) -> str | None:
    """The version ``app.python`` names ('3.13'); None when it names an interpreter path or nothing."""
    return app.python if app.python and not app.python.startswith("/") else None


def python_packages(app) -> list[str]:
    """The distribution's packages that provide the app's interpreter and its venv module."""
    stem = f"python{requested_python(app)}" if requested_python(app) else "python3"
    return [stem, f"{stem}-venv"]


def require_python_available(app, facts: dict[str, HostOS]) -> None:
    """Before provisioning: each app host has, or its distribution offers, the interpreter asked for."""
    if not requested_python(app):
        return
    package = python_packages(app)[0]
    lacking = [f"{f.host} ({f.label})" for f in facts.values()
               if not f.python_version and not f.candidates.get(package)]
    if lacking:
        raise SmshipError(f"app.python is {app.python!r} but the distribution of {', '.join(lacking)} offers no "
                          f"{package} package; nothing was changed. Choose a version those hosts' distribution "
                          "has (Debian 12: 3.11, Debian 13: 3.13) or move the hosts to a release that has it")


def require_pooler_available(env, facts: dict[str, HostOS]) -> None:
    """Before provisioning: the db host's distribution offers a PgBouncer that can pool the app."""
    pooler = env.db.pooler
    if pooler is None:
        return
    for host in env.hosts_with("db"):
        found = facts.get(host.name)
        if found is None:
            continue  # unreachable: reported with the other hosts' outcomes
        version = found.pgbouncer_version()
        if version is None:
            raise SmshipError(f"db.pooler asks for PgBouncer, but the distribution of {host.name} ({found.label}) "
                              "offers no pgbouncer package; nothing was changed (run apt-get update there)")
        if pooler.pool_mode == "transaction" and not found.pgbouncer_tracks_prepared_statements():
            raise SmshipError(
                f"db.pooler.pool_mode is 'transaction', but {host.name} ({found.label}) offers PgBouncer "
                f"{dotted(version)}, which lets one client's prepared statements collide with another's "
                f"(asyncpg prepares every statement); {dotted(PGBOUNCER_PREPARED_STATEMENTS)} keeps them apart "
                "and Debian 13 has it. Nothing was changed: run the db host on Debian 13, or set "
                "db.pooler.pool_mode: session (which saves no connection while the app's pools hold theirs)")


def planned_python(app, facts: HostOS) -> str | None:
    """The minor version the app will run on this host once provisioned."""
    return requested_python(app) or facts.python_minor


def require_one_python(app, versions: dict[str, str | None]) -> str:
    """The app hosts' one Python version; a fleet that mixes them is refused, naming each host."""
    missing = sorted(h for h, v in versions.items() if not v)
    if missing:
        raise SmshipError(f"{', '.join(missing)}: no interpreter at {app.interpreter}; run 'smship provision' "
                          "first (it installs it) or set app.python")
    distinct = sorted(set(versions.values()))
    if len(distinct) > 1:
        listing = "; ".join(f"{v}: {', '.join(sorted(h for h, hv in versions.items() if hv == v))}"
                            for v in distinct)
        raise SmshipError(f"the app hosts run different Python versions ({listing}); one release's wheels "
                          "fit one version, so nothing was changed. Put the app hosts on one Debian release, "
                          "or set app.python to a version every host's distribution offers")
    return distinct[0]


def wheel_target(app, interpreters: dict):
    """The wheelhouse target for the app hosts' one interpreter (``inspect``'s :class:`Interpreter` or None)."""
    from smship.release.wheelhouse import Target

    full = {h: i.version if i else None for h, i in interpreters.items()}
    minor = require_one_python(app, {h: ".".join(v.split(".")[:2]) if v else None for h, v in full.items()})
    lowest = min(debian_version(i.glibc if i else None) or (2, 36) for i in interpreters.values())
    first = next(i for i in interpreters.values() if i)
    return Target(python_version=minor, python_full_version=min(full.values(), key=debian_version),
                  machine=first.machine or "x86_64", glibc=(lowest[0], lowest[1] if len(lowest) > 1 else 0))


def require_release_fits(release, target) -> None:
    """A prebuilt release's wheels fit only the Python it was built for."""
    built_for = release.manifest.get("python")
    if built_for and built_for != target.python_version:
        raise SmshipError(f"release {release.id} was built for CPython {built_for} but the app hosts run "
                          f"{target.python_version}; nothing was changed. Build it for them: "
                          f"smship build --python {target.python_version}")
