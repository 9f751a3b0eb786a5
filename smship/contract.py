"""The app contract: how an app tells smship where its parts are.

Every default is the smpy convention (``main:app``, ``scripts.run_worker:celery``,
``alembic upgrade head`` in ``host/``, a Vite build of ``client_app/`` into
``static/dist``, ``SM_*`` settings), so an inventory written for an smpy app
needs none of this; any other FastAPI + Celery app declares what differs.
"""

from __future__ import annotations

import re
import shlex
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# An import path as uvicorn and celery take it: ``package.module:attribute``.
_IMPORT_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*(:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*)?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_VERSION = re.compile(r"3\.\d{1,2}")
_URL_PATH = re.compile(r"/([A-Za-z0-9._~-]+/)*")
# C0 and C1 controls (NEL among them) and the Unicode line and paragraph
# separators: each can end a line in some file a value is rendered into.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL = CONTROL

DATABASE_DRIVERS = ("postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2", "postgresql")


class FieldProblem(ValueError):
    """A rule that points below the field that checked it.

    Pydantic reports a validator's error at the field or model; ``subpath``
    lets the message name the exact place (``hosts[3].roles``) instead.
    """

    def __init__(self, subpath: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.subpath = subpath


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_control(value: str, what: str = "value") -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{what} must not contain control characters")
    return value


def env_map(value: Any, names: re.Pattern, names_are: str, refused: frozenset[str] = frozenset(),
            refused_why: str = "") -> Any:
    """A map of environment variables: names matching ``names`` whole, plain single-line values
    (booleans as ``true``/``false``), none of the ``refused`` names."""
    if not isinstance(value, dict):
        return value
    for key, item in value.items():
        if not isinstance(key, str) or not names.fullmatch(key):
            raise FieldProblem((str(key),), names_are)
        if key in refused:
            raise FieldProblem((key,), refused_why)
        if isinstance(item, (dict, list)) or item is None:
            raise FieldProblem((key,), "must be a plain value")
        if _CONTROL.search(str(item)):
            raise FieldProblem((key,), "must be a single line without control characters")
    return {key: str(item).lower() if isinstance(item, bool) else str(item) for key, item in value.items()}


def relative_path(value: str | None) -> str | None:
    """A path inside the repository: relative, '/'-separated, no control characters.

    ``..`` is allowed (a front end beside the Python project in a monorepo);
    whether it stays inside the repository is checked where the repository is known.
    """
    if value is None:
        return None
    _no_control(value, "a path")
    path = PurePosixPath(value)
    if path.is_absolute() or "\\" in value or not value.strip():
        raise ValueError(f"{value!r} must be a path relative to the repository, with '/' separators")
    return str(path)


def command_words(value: Any) -> Any:
    """A command as a list of words: a list as given, a string split like a shell would."""
    if isinstance(value, str):
        _no_control(value, "a command")
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a command line: {exc}") from None
        if not words:
            raise ValueError("must not be empty")
        return words
    if isinstance(value, list):
        for word in value:
            if not isinstance(word, str):
                raise ValueError("each word of a command must be a string")
            _no_control(word, "a command")
        if not value:
            raise ValueError("must not be empty")
    return value


def _import_path(value: str) -> str:
    if not _IMPORT_PATH.fullmatch(value):
        raise ValueError(f"{value!r} is not an import path such as 'package.module:app'")
    return value


def _arguments(value: list[str]) -> list[str]:
    for word in value:
        _no_control(word, "an argument")
    return value


class Process(_Model):
    """One kind of process the app runs: what to import and extra arguments."""

    app: str | None = None
    args: list[str] = Field(default_factory=list)

    _app = field_validator("app")(lambda cls, v: v if v is None else _import_path(v))
    _args = field_validator("args")(lambda cls, v: _arguments(v))


class Migrate(_Model):
    """The schema migration run once per deploy, before any restart."""

    command: list[str] = Field(default_factory=lambda: ["alembic", "upgrade", "head"])
    cwd: str = "host"

    _command = field_validator("command", mode="before")(lambda cls, v: command_words(v))
    _cwd = field_validator("cwd")(lambda cls, v: relative_path(v))


class Frontend(_Model):
    """The front end built on the machine running smship and served by nginx."""

    dir: str = "client_app"
    install: list[str] | None = None
    build: list[str] = Field(default_factory=lambda: ["npm", "run", "build"])
    env: dict[str, str] = Field(default_factory=dict)
    output: str = "static/dist"
    url: str = "/static/dist/"
    immutable: str | None = "assets/"
    manifest: str | None = ".vite/manifest.json"

    _paths = field_validator("dir", "output")(lambda cls, v: relative_path(v))
    _commands = field_validator("install", "build", mode="before")(
        lambda cls, v: v if v is None else command_words(v))

    _env = field_validator("env", mode="before")(
        lambda cls, v: env_map(v, _ENV_NAME, "is not an environment variable name"))

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not _URL_PATH.fullmatch(value):
            raise ValueError(f"{value!r} must be a URL path that starts and ends with '/', such as /static/dist/")
        if value == "/":
            raise ValueError("'/' is where nginx passes requests to the app; serve the front end under a path "
                             "of its own, such as /app/")
        return value

    @field_validator("immutable")
    @classmethod
    def _immutable(cls, value: str | None) -> str | None:
        if value is not None and not _URL_PATH.fullmatch("/" + value):
            raise ValueError(f"{value!r} must be a sub-path of the output ending with '/', such as assets/")
        return value

    @field_validator("manifest")
    @classmethod
    def _manifest(cls, value: str | None) -> str | None:
        return relative_path(value)

    def install_command(self, has_lock: bool) -> list[str]:
        """The declared install command, else ``npm ci`` with a lock and ``npm install`` without."""
        if self.install is not None:
            return self.install
        return ["npm", "ci", "--no-audit", "--no-fund"] if has_lock else ["npm", "install", "--no-audit", "--no-fund"]

    def build_env(self, domain: str) -> dict[str, str]:
        """The declared build-time environment, ``{domain}`` replaced by the environment's domain."""
        return {key: value.replace("{domain}", domain) for key, value in self.env.items()}


class SettingNames(_Model):
    """The names under which the app reads the values smship manages."""

    environment: str = "SM_ENVIRONMENT"
    database_url: str = "SM_DATABASE_URL"
    database_driver: Literal[DATABASE_DRIVERS] = "postgresql+asyncpg"  # type: ignore[valid-type]
    redis_url: str = "SM_REDIS_URL"
    broker_url: str | None = None
    secret_key: str = "SM_SECRET_KEY"
    file_storage_path: str | None = "SM_FILE_STORAGE_PATH"
    log_format: str | None = "SM_LOG_FORMAT"
    db_pool_size: str | None = "SM_DB_POOL_SIZE"
    db_max_overflow: str | None = "SM_DB_MAX_OVERFLOW"
    secrets: list[str] = Field(default_factory=list, description="More secrets copied from the backend into the env file.")

    @model_validator(mode="before")
    @classmethod
    def _names(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                names = value if key == "secrets" and isinstance(value, list) else [value]
                if key == "database_driver":
                    continue
                for name in names:
                    if name is not None and (not isinstance(name, str) or not _ENV_NAME.fullmatch(name)):
                        raise ValueError(f"{key}: {name!r} is not an environment variable name")
        return data


    def backend_names(self) -> tuple[str, ...]:
        """The names the app's values may have in the secrets backend (beyond smship's own)."""
        return tuple(dict.fromkeys([self.secret_key, self.database_url, self.redis_url, *self.secrets]))


class AppContract(_Model):
    """The parts of ``app:`` that describe the code (see inventory.example)."""

    root: str = "."
    lock: str | None = None
    web: Process = Process()
    worker: Process = Process()
    beat: Process = Process()
    migrate: Migrate | None = Migrate()
    release_commands: list[list[str]] = Field(default_factory=list)
    frontend: Frontend | None = Frontend()
    settings: SettingNames = SettingNames()

    _paths = field_validator("root", "lock")(lambda cls, v: relative_path(v))

    @field_validator("migrate", "frontend", mode="before")
    @classmethod
    def _false_is_none(cls, value: Any) -> Any:
        if value is False:
            return None
        if value is True:
            return {}
        return value

    @field_validator("release_commands", mode="before")
    @classmethod
    def _commands(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [command_words(item) for item in value]
        return value

    @property
    def web_app(self) -> str:
        return self.web.app or "main:app"

    @property
    def worker_app(self) -> str:
        return self.worker.app or "scripts.run_worker:celery"

    @property
    def beat_app(self) -> str:
        """Beat runs the worker's Celery app unless told otherwise."""
        return self.beat.app or self.worker_app


def python_version(value: str) -> str:
    """``app.python``: a version such as ``3.13``, or (older inventories) an absolute interpreter path."""
    _no_control(value, "app.python")
    if _VERSION.fullmatch(value) or re.fullmatch(r"/[A-Za-z0-9_./+-]+", value):
        return value
    raise ValueError(f"{value!r} is neither a Python version such as '3.13' nor an interpreter path")
