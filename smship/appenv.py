"""The app's environment file: every ``SM_*`` setting a host's units read.

Plain settings come from the inventory, secrets from the secrets backend,
and the connection URLs are derived from the ``db`` host when the secrets do
not name them.  The result is rendered into ``shared/env`` (mode 0600).
"""

from __future__ import annotations

from urllib.parse import quote

from smship.errors import SmshipError
from smship.inventory import App, Environment
from smship.layout import Layout


def database_url_setting(app: App, env: Environment) -> str:
    """The env file's name for the database URL: the one place that knows it."""
    return "SM_DATABASE_URL"


def database_name(app: App, env: Environment) -> str:
    return env.db.name or app.name.replace("-", "_")


def app_environment(env: Environment) -> str:
    """The SM_ENVIRONMENT the app will see: the inventory's, else production."""
    return env.env.get("SM_ENVIRONMENT", "production")


def app_settings(app: App, env: Environment, secrets: dict[str, str], source: str) -> dict[str, str]:
    """All values of the env file; ``source`` names the secrets backend in errors."""
    layout = Layout.of(app, env)
    values = {"SM_ENVIRONMENT": app_environment(env), "SM_FILE_STORAGE_PATH": layout.uploads, **env.env}
    if not secrets.get("SM_SECRET_KEY"):
        raise SmshipError(f"{source}: SM_SECRET_KEY is not set; smship will not start the app without it")
    values["SM_SECRET_KEY"] = secrets["SM_SECRET_KEY"]
    db_hosts = env.hosts_with("db")
    for name, scheme, password_name, port, path in (
        (database_url_setting(app, env), "postgresql+asyncpg", "SM_DB_PASSWORD", env.db.port, database_name(app, env)),
        ("SM_REDIS_URL", "redis", "SM_REDIS_PASSWORD", 6379, "0"),
    ):
        if secrets.get(name):
            values[name] = secrets[name]
        elif db_hosts:
            password = secrets.get(password_name)
            if not password:
                raise SmshipError(f"{source}: {password_name} is not set (needed to reach the db host {db_hosts[0].name})")
            user = database_name(app, env) if scheme != "redis" else ""
            values[name] = f"{scheme}://{user}:{quote(password, safe='')}@{db_hosts[0].address}:{port}/{path}"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        if secrets.get(key):
            values[key] = secrets[key]
    values.update(storage_settings(env, layout, secrets, source))
    return values


def storage_settings(env: Environment, layout: Layout, secrets: dict[str, str], source: str) -> dict[str, str]:
    """The S3 upload backend's settings, when the environment has a ``storage`` section.

    They live in the env file, which provision writes and deploys leave alone,
    so every later provision and deploy keeps the app on S3.
    """
    storage = env.storage
    if storage is None:
        return {}
    missing = [key for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not secrets.get(key)]
    if missing:
        raise SmshipError(f"{source}: {missing[0]} is not set (needed for the S3 bucket {storage.bucket!r})")
    values = {"SM_FILE_STORAGE_BACKEND": "s3", "SM_S3_BUCKET": storage.bucket, "SM_S3_REGION": storage.region}
    if storage.endpoint_url:
        values["SM_S3_ENDPOINT_URL"] = storage.endpoint_url
    if storage.ca_file:
        # boto3 reads its CA bundle from here: the private endpoint's CA only.
        values["AWS_CA_BUNDLE"] = layout.storage_ca
    return values
