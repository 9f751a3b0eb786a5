"""The database's facts, read by the live release's own Python on an app host.

It runs through ``systemd-run`` as the app user with the app's env file, so
it connects exactly as the app does (the same URL and password) and no
credential crosses the wire or a command line.  It uses whichever Postgres
driver the release ships (psycopg 3, psycopg2 or asyncpg: the URL's driver
part is only SQLAlchemy's), so an app is not asked to carry one for smship.
One JSON line comes back; ``cause`` says whether the database or the probe
itself is to blame when it has an ``error``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from smship.command import Command
from smship.steps.migrate import app_python_program
from smship.layout import Layout
from smship.release.model import MANIFEST

DRIVERS = ("psycopg", "psycopg2", "asyncpg")

# Runs on the host with the release's virtualenv; argv[1] names the URL's
# variable, argv[2:] the drivers to try and, as --manifest=PATH, the release's
# release.json. It prints one JSON object.
PROBE = r'''
import importlib, json, os, sys
out = {}
MANIFEST = "--manifest="
drivers = [a for a in sys.argv[2:] if not a.startswith(MANIFEST)]
manifest = next((a[len(MANIFEST):] for a in sys.argv[2:] if a.startswith(MANIFEST)), None)


def recorded_heads():
    """The heads smship read from the release's migrations when it built it (none without a manifest)."""
    if manifest is None:
        return set()
    try:
        with open(manifest) as handle:
            return set(json.load(handle).get("alembic_heads") or ())
    except (OSError, ValueError, AttributeError):
        return set()


def connect(name, dsn):
    """(rows(sql) -> list of tuples, close()) over one connection of driver ``name``."""
    module = importlib.import_module(name)
    if name != "asyncpg":
        conn = module.connect(dsn, connect_timeout=5)
        cursor = conn.cursor()

        def rows(sql):
            cursor.execute(sql)
            return [tuple(r) for r in cursor.fetchall()]
        return rows, conn.close
    import asyncio
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(module.connect(dsn, timeout=5))
    return (lambda sql: [tuple(r) for r in loop.run_until_complete(conn.fetch(sql))],
            lambda: (loop.run_until_complete(conn.close()), loop.close()))


def driver(names, url):
    """The first driver the release has, the URL's own (postgresql+NAME://) first."""
    wanted = url.partition("://")[0].partition("+")[2]
    for name in sorted(names, key=lambda n: n != wanted):
        try:
            importlib.import_module(name)
            return name
        except ImportError:
            continue
    return None


url = os.environ.get(sys.argv[1], "")
name = driver(drivers, url)
if not url:
    out.update(error="%s is not set in the app's env file" % sys.argv[1], cause="probe")
elif name is None:
    out.update(error="the live release's Python has no Postgres driver to read the database with (looked for %s)"
               % ", ".join(drivers), cause="probe")
else:
    out["driver"] = name
    try:
        rows, close = connect(name, "postgresql://" + url.partition("://")[2])
        try:
            one = lambda sql: rows(sql)[0][0]
            out["max_connections"] = int(one("show max_connections"))
            out["reserved_connections"] = int(one("show superuser_reserved_connections"))
            out["revisions"] = [r[0] for r in rows("select version_num from alembic_version")] \
                if one("select to_regclass('alembic_version')::text") else []
            has_flag = one("select count(*) from information_schema.columns where table_name = 'users' "
                           "and column_name = 'is_admin'")
            out["admins"] = one("select count(*) from users where is_admin") if has_flag else None
        finally:
            close()
    except Exception as exc:
        message = (str(exc).strip().splitlines() or [""])[0]
        # A driver may quote the URL back: its password never leaves the host.
        from urllib.parse import unquote, urlsplit
        password = urlsplit(url).password
        for secret in {password, unquote(password or "")} - {None, ""}:
            message = message.replace(secret, "***")
        out.update(error="%s: %s" % (type(exc).__name__, message), cause="database")
if out.get("revisions") and set(out["revisions"]) <= recorded_heads():
    # At the release's own heads (the usual case): known without importing alembic, half a second of
    # the probe's time.
    out["known"] = sorted(out["revisions"])
elif out.get("revisions"):
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        scripts = ScriptDirectory.from_config(Config("alembic.ini"))
        known = set()
        for revision in out["revisions"]:
            try:
                if scripts.get_revision(revision) is not None:
                    known.add(revision)
            except Exception:
                pass
        out["known"] = sorted(known)
    except Exception as exc:
        out["known_error"] = str(exc)[:200]
print(json.dumps(out))
'''


def probe_command(layout: Layout, release_id: str | None, url_name: str = "SM_DATABASE_URL",
                  cwd: str = "host") -> Command:
    """The probe in ``cwd`` of the release (where alembic.ini is), reading the URL under the app's name
    with whichever of ``DRIVERS`` the release has; ``release_id`` None: the live one (``current``)."""
    release = layout.release(release_id) if release_id else layout.current
    return app_python_program(layout, f"{release}/{cwd}", f"{release}/.venv/bin/python", PROBE, url_name,
                              *DRIVERS, f"--manifest={release}/{MANIFEST}",
                              description=f"database facts ({release_id or 'the live release'})")


@dataclass(frozen=True)
class DatabaseFacts:
    """What the probe read from the database; with an ``error``, ``cause`` says who is to blame:
    "database" (Postgres refused or failed) or "probe" (it could not ask)."""
    error: str = ""
    cause: str | None = None
    driver: str | None = None
    max_connections: int | None = None
    # Postgres' own default: assumed when the probe could not say.
    reserved_connections: int = 3
    revisions: tuple[str, ...] = ()        # alembic_version's rows
    known: tuple[str, ...] = ()            # those of ``revisions`` the live release's migrations know
    admins: int | None = None              # None: the database has no users.is_admin column


def probe_failed(error: str) -> DatabaseFacts:
    """The probe's own trouble, not the database's."""
    return DatabaseFacts(error=error, cause="probe")


def _database_facts(found: dict[str, Any]) -> DatabaseFacts:
    return DatabaseFacts(error=str(found.get("error") or ""), cause=found.get("cause"), driver=found.get("driver"),
                         max_connections=found.get("max_connections"),
                         reserved_connections=found.get("reserved_connections", 3),
                         revisions=tuple(found.get("revisions") or ()), known=tuple(found.get("known") or ()),
                         admins=found.get("admins"))


def parse_probe(stdout: str) -> DatabaseFacts:
    """The probe's JSON (the last line: the app may log to stdout first)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return _database_facts(json.loads(line))
            except ValueError:
                break
    return probe_failed(f"the database probe answered no JSON: {stdout.strip()[-200:]!r}")
