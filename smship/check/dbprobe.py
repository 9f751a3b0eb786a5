"""The database's facts, read by the live release's own Python on an app host.

It runs through ``systemd-run`` as the app user with the app's env file, so
it connects exactly as the app does (psycopg, the same URL and password) and
no credential crosses the wire or a command line.  One JSON line comes back.
"""

from __future__ import annotations

import json

from smship.command import Command
from smship.deploy.migrate import in_app_environment
from smship.layout import Layout

# Runs on the host with the release's virtualenv; it prints one JSON object.
PROBE = r'''
import json, os, sys
out = {}
try:
    import psycopg
    url = os.environ.get(sys.argv[1], "")
    dsn = "postgresql://" + url.partition("://")[2]
    with psycopg.connect(dsn, connect_timeout=5) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]
        out["max_connections"] = int(one("show max_connections"))
        out["reserved_connections"] = int(one("show superuser_reserved_connections"))
        out["revisions"] = [r[0] for r in conn.execute("select version_num from alembic_version")] \
            if one("select to_regclass('alembic_version')") else []
        has_flag = one("select count(*) from information_schema.columns where table_name = 'users' "
                       "and column_name = 'is_admin'")
        out["admins"] = one("select count(*) from users where is_admin") if has_flag else None
except Exception as exc:
    out["error"] = "%s: %s" % (type(exc).__name__, (str(exc).strip().splitlines() or [""])[0])
if out.get("revisions"):
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


def probe_command(layout: Layout, release_id: str, url_name: str = "SM_DATABASE_URL", cwd: str = "host") -> Command:
    """The probe in ``cwd`` of the release (where alembic.ini is), reading the URL under the app's name."""
    release = layout.release(release_id)
    return in_app_environment(layout, f"{release}/{cwd}", f"{release}/.venv/bin/python", "-c", PROBE, url_name,
                              description=f"database facts ({release_id})")


def parse_probe(stdout: str) -> dict:
    """The probe's JSON (the last line: the app may log to stdout first)."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"error": f"the database probe answered no JSON: {stdout.strip()[-200:]!r}"}
