"""The backup repository and the cluster it protects, derived once from the inventory.

Templates (pgbackrest.conf, the archive settings, the timer) and the backup
commands read the same values from here, so the stanza or a path cannot be
one thing in a file and another in a command.
"""

from __future__ import annotations

from typing import Any

from smship.appenv import database_name
from smship.errors import SmshipError
from smship.inventory import App, Environment, split_endpoint

PGBACKREST_CONF = "/etc/pgbackrest/pgbackrest.conf"
PGBACKREST_CA = "/etc/pgbackrest/ca.crt"


def stanza(app: App) -> str:
    return app.name


def cluster(app: App, env: Environment) -> dict[str, Any]:
    """What the db host's backup program needs to reach the real cluster.

    Without db.postgres_version the program finds the major of the host's 'main' cluster itself.
    """
    return {"version": env.db.postgres_version, "name": "main", "port": env.db.port,
            "database": database_name(app, env)}


def backup_variables(app: App, env: Environment, env_name: str, secrets: dict[str, str],
                     source: str, postgres_major: int) -> dict[str, Any] | None:
    """Values for pgbackrest.conf and the units; None when the environment has no backup section."""
    if env.backup is None:
        return None
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if not secrets.get(key):
            raise SmshipError(f"{source}: {key} is not set (needed by pgBackRest for the backup bucket)")
    endpoint = env.backup_endpoint()
    region = env.backup_region()
    if endpoint:
        _, host, port = split_endpoint(endpoint)
        uri_style = "path"      # what S3-compatible stores support
    else:
        host, port, uri_style = f"s3.{region}.amazonaws.com", None, "host"
    version = postgres_major
    return {
        "stanza": stanza(app), "bucket": env.backup_bucket(), "region": region, "endpoint": host, "port": port,
        "uri_style": uri_style, "path": env.backup.path or f"/{app.name}/{env_name}",
        "ca_file": PGBACKREST_CA if env.backup_ca_file() else None,
        "ca_local": str(env.backup_ca_file()) if env.backup_ca_file() else None,
        "verify_tls": env.backup.verify_tls, "retention_full": env.backup.retention_full,
        "schedule": env.backup.schedule, "data_dir": f"/var/lib/postgresql/{version}/main",
        "pg_port": env.db.port, "key": secrets["AWS_ACCESS_KEY_ID"], "secret": secrets["AWS_SECRET_ACCESS_KEY"],
    }
