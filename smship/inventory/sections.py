"""The sections of an environment: ssh, tls, health, web, worker, db (and its pooler), lb, firewall, logs, storage,
backup, secrets.

Each is a frozen pydantic model that refuses unknown fields; rules that span
sections are the environment's (smship.inventory.schema).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from smship.contract import FieldProblem
from smship.inputrules import check_identifier, check_user_name
from smship.inventory.rules import ON_CALENDAR, PERCENT, check_bucket, check_endpoint, check_region, local_path


class StrictModel(BaseModel):
    """Unknown fields are refused (a typo is an error, not a default) and values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SSH(StrictModel):
    user: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    known_hosts: Path | None = None
    accept_unknown_hosts: bool = False
    config: Path | None = None
    identity: Path | None = None
    connect_timeout: float = Field(default=10, gt=0, le=300)
    parallel: int = Field(default=10, ge=1, le=200)

    _paths = field_validator("known_hosts", "config", "identity", mode="before")(local_path)
    _user = field_validator("user")(lambda cls, v: v if v is None else check_user_name(v))


class TLS(StrictModel):
    source: Literal["files", "self-signed"] = "files"
    certificate: Path | None = None
    key: Path | None = None

    _paths = field_validator("certificate", "key", mode="before")(local_path)

    @model_validator(mode="after")
    def _files_named(self) -> "TLS":
        if self.source == "files":
            for name in ("certificate", "key"):
                if getattr(self, name) is None:
                    raise FieldProblem((name,), "required when source is 'files'")
        return self


class Endpoint(StrictModel):
    """A health endpoint and what counts as healthy there.

    ``status``: the smpy JSON ``status`` (``alive`` on the live endpoint,
    ``healthy`` on the ready one); ``2xx``: any 2xx answer; ``body``: a 2xx
    answer whose body, stripped, is exactly ``body``.
    """

    path: str
    expect: Literal["status", "2xx", "body"] = "status"
    body: str | None = None

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not re.fullmatch(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*", value):
            raise ValueError("must be a URL path starting with '/'")
        return value

    @model_validator(mode="after")
    def _body_named(self) -> "Endpoint":
        if (self.expect == "body") != (self.body is not None):
            raise FieldProblem(("body",), "required with expect: body, and only then")
        if self.body is not None and re.search(r"[\x00-\x1f\x7f]", self.body):
            raise FieldProblem(("body",), "must not contain control characters")
        return self


def _endpoint_of(value: Any) -> Any:
    """A plain path is the endpoint with the smpy expectation."""
    return {"path": value} if isinstance(value, str) else value


class Health(StrictModel):
    live: Endpoint = Endpoint(path="/health/live")
    ready: Endpoint = Endpoint(path="/health/ready")
    accept_degraded: bool = False
    timeout: float = Field(default=60, gt=0, le=3600)

    _endpoints = field_validator("live", "ready", mode="before")(lambda cls, v: _endpoint_of(v))


class Checks(StrictModel):
    """Checks of the production checklist this environment turns off (recorded in the audit log)."""

    skip: list[str] = Field(default_factory=list)

    @field_validator("skip")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        from smship.checknames import CHECK_NAMES

        for name in value:
            if name not in CHECK_NAMES:
                raise ValueError(f"{name!r} is not a check; checks are: {', '.join(CHECK_NAMES)}")
        return list(dict.fromkeys(value))


class Web(StrictModel):
    workers: int = Field(default=2, ge=1, le=64)
    # Read by nothing since uvicorn listens on a socket per web slot (/run/APP-web/a.sock);
    # still accepted so inventories written before keep loading.
    port: int = Field(default=8000, ge=1, le=65535)
    batch_size: int | str = 1

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int | str) -> int | str:
        if isinstance(value, int):
            if value < 1:
                raise ValueError("must be at least 1")
            return value
        match = PERCENT.fullmatch(value)
        if not match or not 1 <= int(match.group(1)) <= 100:
            raise ValueError("must be a host count or a share from '1%' to '100%'")
        return value

    def batch_count(self, hosts: int) -> int:
        """How many of ``hosts`` hosts one batch of a roll takes."""
        if isinstance(self.batch_size, int):
            return max(1, min(self.batch_size, hosts))
        share = int(self.batch_size.rstrip("%"))
        return max(1, min(hosts, hosts * share // 100))


class Worker(StrictModel):
    concurrency: int = Field(default=2, ge=1, le=256)
    modules_enabled: list[str] = Field(default_factory=lambda: ["background_tasks"])
    queues: list[str] = Field(default_factory=lambda: ["celery"])
    stop_timeout: int = Field(default=600, ge=1)
    after_first_web_batch: bool = Field(default=False, description=(
        "A deploy's (or rotation's) workers and beat take the new release only once its first web batch is "
        "healthy; by default they start with that batch (and go back should it fail)."))

    @field_validator("modules_enabled", "queues")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", item):
                raise ValueError(f"{item[:40]!r} is not a plain name (letters, digits, '_', '.', '-'; "
                                 "not starting with '-' or '.')")
        return value


class Pooler(StrictModel):
    """PgBouncer on the db host, between the app and Postgres (migrations still go straight to Postgres).

    ``pool_size`` server connections serve every app process; ``max_client_conn``
    bounds the app processes' own pools together.
    """

    tool: Literal["pgbouncer"] = "pgbouncer"
    port: int = Field(default=6432, ge=1, le=65535)
    pool_mode: Literal["transaction", "session"] = "transaction"
    pool_size: int = Field(default=20, ge=1, le=10000)
    max_client_conn: int = Field(default=1000, ge=10, le=100000)


def _pooler_of(value: Any) -> Any:
    """``pooler: pgbouncer`` is the pooler with every default."""
    return {"tool": value} if isinstance(value, str) else value


class Db(StrictModel):
    max_connections: int = Field(default=100, ge=10)
    # None: the major the db host has (its cluster, else what its distribution installs).
    postgres_version: int | None = Field(default=None, ge=10, le=30)
    name: str | None = Field(default=None, description="Database and role name (default: the app's name, '-' as '_').")
    port: int = Field(default=5432, ge=1, le=65535)

    pooler: Pooler | None = None

    _name = field_validator("name")(lambda cls, v: v if v is None else check_identifier(v))
    _pooler = field_validator("pooler", mode="before")(lambda cls, v: _pooler_of(v))

    @model_validator(mode="after")
    def _ports_differ(self) -> "Db":
        if self.pooler is not None and self.pooler.port == self.port:
            raise FieldProblem(("pooler", "port"), f"is Postgres' own port ({self.port}): give PgBouncer another")
        return self


class Lb(StrictModel):
    pass


class Firewall(StrictModel):
    """nftables on every host: SSH always, 80/443 where a site is served, Postgres/Redis to app hosts."""
    enabled: bool = True
    # More TCP ports open to every address on every host (a monitoring agent, say).
    allow_tcp: list[int] = Field(default_factory=list)

    @field_validator("allow_tcp")
    @classmethod
    def _ports(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is out of range (1-65535)")
        return value


class Beat(StrictModel):
    pass


class Logs(StrictModel):
    """Every app host's journal shipped to a collector of the fleet (smship.logship)."""

    collector: str = Field(description="The inventory name of the host that keeps the journals.")
    port: int = Field(default=19532, ge=1, le=65535, description="The collector's HTTPS port.")


class Storage(StrictModel):
    """The S3 bucket the app keeps uploads in (SM_FILE_STORAGE_BACKEND=s3)."""

    bucket: str
    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="For S3-compatible stores; AWS when absent.")
    versioning: bool = True
    noncurrent_days: int | None = Field(default=None, ge=1, le=3650,
                                        description="Delete versions this many days after they were replaced.")
    ca_file: Path | None = Field(default=None, description="CA certificate of a private endpoint.")

    _bucket = field_validator("bucket")(lambda cls, v: check_bucket(v))
    _endpoint = field_validator("endpoint_url")(lambda cls, v: check_endpoint(v))
    _ca = field_validator("ca_file", mode="before")(local_path)

    _region = field_validator("region")(lambda cls, v: check_region(v))


class Backup(StrictModel):
    """WAL archiving and base backups of the db host's Postgres to S3, with pgBackRest.

    Bucket, region, endpoint and CA default to the ``storage`` section's.
    """

    tool: Literal["pgbackrest"] = "pgbackrest"
    bucket: str | None = None
    path: str | None = Field(default=None, description="Repository path in the bucket (default /<app>/<env>).")
    region: str | None = None
    endpoint_url: str | None = None
    ca_file: Path | None = None
    verify_tls: bool = True
    retention_full: int = Field(default=2, ge=1, le=100)
    schedule: str = Field(default="daily", description="systemd OnCalendar of the full base backups.")

    _bucket = field_validator("bucket")(lambda cls, v: check_bucket(v))
    _endpoint = field_validator("endpoint_url")(lambda cls, v: check_endpoint(v))
    _ca = field_validator("ca_file", mode="before")(local_path)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and (not re.fullmatch(r"/[A-Za-z0-9_./-]*", value) or ".." in value):
            raise ValueError("must be an absolute path of plain characters, such as /pgbackrest/prod")
        return value

    _region = field_validator("region")(lambda cls, v: check_region(v))

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        if not ON_CALENDAR.fullmatch(value):
            raise ValueError(f"{value!r} is not a systemd OnCalendar expression such as 'daily' or '*-*-* 03:00:00'")
        return value


class Secrets(StrictModel):
    backend: Literal["file", "env", "aws-ssm", "aws-secretsmanager"] = "file"
    # file: the local KEY=value file.
    path: Path | None = None
    # aws-ssm: each SecureString parameter directly under this path is one secret.
    prefix: str | None = None
    # aws-secretsmanager: one secret whose value is a JSON object {NAME: value}.
    secret_id: str | None = None
    # Both AWS backends: the region (default: boto3's own configuration), and an
    # AWS-compatible endpoint to use instead of AWS itself.
    region: str | None = None
    endpoint_url: str | None = None

    _path = field_validator("path", mode="before")(local_path)

    @field_validator("secret_id")
    @classmethod
    def _secret_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9/_+=.@][A-Za-z0-9/_+=.@:-]{0,2047}", value):
            raise ValueError(f"{value[:40]!r} is not a secret name or ARN (letters, digits and /_+=.@:-, "
                             "not starting with '-')")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"/([A-Za-z0-9_.-]+/)+", value):
            raise ValueError(f"{value!r} must be a parameter path that starts and ends with '/', such as /shop/prod/")
        return value

    _endpoint = field_validator("endpoint_url")(lambda cls, v: check_endpoint(v))

    @model_validator(mode="after")
    def _fields_of_backend(self) -> "Secrets":
        needs = {"file": "path", "aws-ssm": "prefix", "aws-secretsmanager": "secret_id"}
        if self.backend in needs and getattr(self, needs[self.backend]) is None:
            raise FieldProblem((needs[self.backend],), f"required when backend is '{self.backend}'")
        for name, backend in needs.items():
            if backend != needs.get(self.backend) and getattr(self, backend) is not None:
                raise FieldProblem((backend,), f"only for backend '{name}' (this one is '{self.backend}')")
        if not self.backend.startswith("aws-"):
            for name in ("region", "endpoint_url"):
                if getattr(self, name) is not None:
                    raise FieldProblem((name,), "only for the aws-ssm and aws-secretsmanager backends")
        return self

