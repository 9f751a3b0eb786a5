"""The app's environment file: every setting a host's units read, under the app's names.

Plain settings come from the inventory, secrets from the secrets backend,
and the connection URLs are derived from the ``db`` host when the secrets do
not name them (the app's through PgBouncer when the db section has a pooler).  The result is rendered into ``shared/env`` (mode 0600).
"""

from __future__ import annotations

from urllib.parse import quote

from smship.errors import SmshipError
from smship.inventory import App, Environment
from smship.layout import Layout


def database_name(app: App, env: Environment) -> str:
    return env.db.name or app.name.replace("-", "_")


def app_environment(app: App, env: Environment) -> str:
    """The environment the app will see (under ``app.settings.environment``): the inventory's, else production."""
    return env.env.get(app.settings.environment, "production")


def _connection_url(scheme: str, user: str, password: str, host: str, port: int, path: str) -> str:
    return f"{scheme}://{user}:{quote(password, safe='')}@{host}:{port}/{path}"


def _database_url(app: App, env: Environment, password: str, port: int) -> str:
    name = database_name(app, env)
    return _connection_url(app.settings.database_driver, name, password, env.hosts_with("db")[0].address, port, name)


def served_database_port(env: Environment) -> int:
    """Where the app's processes connect on the db host: PgBouncer's port with a pooler, else Postgres'."""
    return env.db.pooler.port if env.db.pooler else env.db.port


def direct_settings(app: App, env: Environment, secrets: dict[str, str]) -> dict[str, str]:
    """With a pooler: the database URL straight to Postgres, for the release steps only.

    Migrations and release commands need a session of their own (advisory
    locks, SET, DDL in a transaction), which transaction pooling does not
    keep. Empty without a pooler, or when the secrets backend gives the URL.
    """
    names = app.settings
    if env.db.pooler is None or secrets.get(names.database_url) or not secrets.get("SM_DB_PASSWORD"):
        return {}
    return {names.database_url: _database_url(app, env, secrets["SM_DB_PASSWORD"], env.db.port)}


def app_settings(app: App, env: Environment, secrets: dict[str, str], source: str) -> dict[str, str]:
    """All values of the env file, under the names the app reads (``app.settings``);
    ``source`` names the secrets backend in errors."""
    names, layout = app.settings, Layout.of(app, env)
    values = {names.environment: app_environment(app, env), **env.env}
    if names.file_storage_path:
        values[names.file_storage_path] = layout.uploads
    if not secrets.get(names.secret_key):
        raise SmshipError(f"{source}: {names.secret_key} is not set; smship will not start the app without it")
    values[names.secret_key] = secrets[names.secret_key]
    db_host = (env.hosts_with("db") or [None])[0]
    # A URL in the backend (under the app's name for it) wins over one made for the db host.
    for name, password_name, made in (
        (names.database_url, "SM_DB_PASSWORD",
         lambda password: _database_url(app, env, password, served_database_port(env))),
        (names.redis_url, "SM_REDIS_PASSWORD",
         lambda password: _connection_url("redis", "", password, db_host.address, 6379, "0")),
    ):
        if secrets.get(name):
            values[name] = secrets[name]
        elif db_host is not None:
            password = secrets.get(password_name)
            if not password:
                raise SmshipError(f"{source}: {password_name} is not set (needed to reach the db host {db_host.name})")
            values[name] = made(password)
    if names.broker_url and names.redis_url in values:
        values[names.broker_url] = values[names.redis_url]
    for name in names.secrets:
        if not secrets.get(name):
            raise SmshipError(f"{source}: {name} is not set (app.settings.secrets names it)")
        values[name] = secrets[name]
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
