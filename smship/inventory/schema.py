"""The inventory's schema: the app and its environments as pydantic models.

Every model refuses unknown fields and is frozen; a rule that spans fields
(a fleet's hosts, a backup's repository) is a model validator here, a rule
for one value is in smship.inventory.rules.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from smship.contract import AppContract, FieldProblem, env_map, python_version
from smship.inputrules import (check_app_path, check_app_user, check_identifier, check_user_name, plain_strings,
                               secret_like)
from smship.inventory.rules import (APP_NAME, ENV_KEY, HOST_NAME, JUMP, ON_CALENDAR, PERCENT, SECRET_KEYS, Role,
                                    check_address, check_bucket, check_endpoint, check_region, is_ip, local_path,
                                    split_endpoint)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class App(AppContract):
    """``app:``: the app's name, where its repository is, and its contract (smship.contract)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Names the app user, /srv/<name> and the units.")
    source: Path = Field(default=Path("."), description="The app's repository (a git checkout).")
    python: str | None = Field(default=None, description="Python version on the hosts, such as '3.13' (default: their python3).")

    _python = field_validator("python")(lambda cls, v: v if v is None else python_version(v))

    @property
    def interpreter(self) -> str:
        """The hosts' interpreter the app's virtualenv is made with."""
        if self.python is None:
            return "/usr/bin/python3"
        return self.python if self.python.startswith("/") else f"/usr/bin/python{self.python}"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not APP_NAME.fullmatch(value):
            raise ValueError("must be lower case letters, digits and '-', starting with a letter (at most 31)")
        return value

    _source = field_validator("source", mode="before")(local_path)


class SSH(_Model):
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


class TLS(_Model):
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


class Endpoint(_Model):
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


class Health(_Model):
    live: Endpoint = Endpoint(path="/health/live")
    ready: Endpoint = Endpoint(path="/health/ready")
    accept_degraded: bool = False
    timeout: float = Field(default=60, gt=0, le=3600)

    _endpoints = field_validator("live", "ready", mode="before")(lambda cls, v: _endpoint_of(v))


class Checks(_Model):
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


class Web(_Model):
    workers: int = Field(default=2, ge=1, le=64)
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


class Worker(_Model):
    concurrency: int = Field(default=2, ge=1, le=256)
    modules_enabled: list[str] = Field(default_factory=lambda: ["background_tasks"])
    queues: list[str] = Field(default_factory=lambda: ["celery"])
    stop_timeout: int = Field(default=600, ge=1)

    @field_validator("modules_enabled", "queues")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", item):
                raise ValueError(f"{item[:40]!r} is not a plain name (letters, digits, '_', '.', '-'; "
                                 "not starting with '-' or '.')")
        return value


class Db(_Model):
    max_connections: int = Field(default=100, ge=10)
    # None: the major the db host has (its cluster, else what its distribution installs).
    postgres_version: int | None = Field(default=None, ge=10, le=30)
    name: str | None = Field(default=None, description="Database and role name (default: the app's name, '-' as '_').")
    port: int = Field(default=5432, ge=1, le=65535)

    _name = field_validator("name")(lambda cls, v: v if v is None else check_identifier(v))


class Lb(_Model):
    pass


class Firewall(_Model):
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


class Beat(_Model):
    pass


class Storage(_Model):
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


class Backup(_Model):
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


class Secrets(_Model):
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


class Host(_Model):
    name: str
    address: str
    port: int | None = Field(default=None, ge=1, le=65535)
    user: str | None = None
    jump: str | None = None
    roles: list[Role] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not HOST_NAME.fullmatch(value):
            raise ValueError(f"{value!r} must be a lower-case host label (letters, digits, '-')")
        return value

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_address(value)

    _user = field_validator("user")(lambda cls, v: v if v is None else check_user_name(v))

    @field_validator("jump")
    @classmethod
    def _jump(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = JUMP.fullmatch(value)
        if not match:
            raise ValueError(f"{value!r} is not [user@]host[:port]")
        if match.group("user") is not None:
            check_user_name(match.group("user"))
        check_address(match.group("host"))
        if match.group("port") and not 1 <= int(match.group("port")) <= 65535:
            raise ValueError(f"port in {value!r} is out of range")
        return value

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, value: list[str]) -> list[str]:
        repeated = [role for role, n in Counter(value).items() if n > 1]
        if repeated:
            raise ValueError(f"role {repeated[0]!r} is listed twice")
        return value


class Environment(_Model):
    domain: str
    # A throwaway environment on test machines (smship lab writes it): the
    # only kind allowed weak choices such as self-signed certificates.
    lab: bool = False
    app_path: str | None = None
    app_user: str | None = None
    keep_releases: int = Field(default=5, ge=2, le=100)
    ssh: SSH = SSH()
    tls: TLS
    health: Health = Health()
    checks: Checks = Checks()
    web: Web = Web()
    worker: Worker = Worker()
    beat: Beat = Beat()
    db: Db = Db()
    lb: Lb = Lb()
    firewall: Firewall = Firewall()
    secrets: Secrets = Secrets(backend="env")
    storage: Storage | None = None
    backup: Backup | None = None
    env: dict[str, str] = Field(default_factory=dict)
    hosts: list[Host] = Field(min_length=1)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        check_address(value)
        if "." not in value:
            raise ValueError(f"{value!r} is not a fully qualified domain name")
        return value

    _app_path = field_validator("app_path")(lambda cls, v: v if v is None else check_app_path(v))
    _app_user = field_validator("app_user")(lambda cls, v: v if v is None else check_app_user(v))

    _env = field_validator("env", mode="before")(lambda cls, v: env_map(
        v, ENV_KEY, "environment variable names are upper case letters, digits and '_'",
        SECRET_KEYS, "is a secret: keep it in the secrets backend, not in the inventory"))

    @field_validator("env")
    @classmethod
    def _no_secret_like(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            why = secret_like(key, item)
            if why:
                raise FieldProblem((key,), f"looks like a secret ({why}): keep it in the secrets backend "
                                           "(secrets: section), not in the plain env map")
        return value

    @model_validator(mode="after")
    def _self_signed_only_in_labs(self) -> "Environment":
        if self.tls.source == "self-signed" and not self.lab:
            raise FieldProblem(("tls", "source"), "self-signed certificates are for labs only: give certificate "
                                                  "and key files, or mark a throwaway environment with `lab: true`")
        return self

    @model_validator(mode="after")
    def _fleet_rules(self) -> "Environment":
        seen_names: dict[str, int] = {}
        seen_addresses: dict[tuple[str, int], int] = {}
        for index, host in enumerate(self.hosts):
            if host.name in seen_names:
                raise FieldProblem(("hosts", index, "name"),
                                   f"duplicate host {host.name!r} (also hosts[{seen_names[host.name]}])")
            seen_names[host.name] = index
            where = (host.address.lower(), host.port or self.ssh.port)
            if where in seen_addresses:
                raise FieldProblem(("hosts", index, "address"),
                                   f"{host.address}:{where[1]} is already hosts[{seen_addresses[where]}]")
            seen_addresses[where] = index
        beats = [i for i, host in enumerate(self.hosts) if "beat" in host.roles]
        if len(beats) > 1:
            raise FieldProblem(("hosts", beats[1], "roles"),
                               f"a second 'beat' host (first: hosts[{beats[0]}]); exactly one beat may run in a fleet")
        if not beats and any("worker" in host.roles for host in self.hosts):
            raise FieldProblem(("hosts",), "workers need exactly one host with the 'beat' role; none has it")
        for index, host in enumerate(self.hosts):
            if "lb" in host.roles and "web" in host.roles:
                raise FieldProblem(("hosts", index, "roles"), "'lb' and 'web' both need ports 80 and 443: put them on different hosts")
        if not any(role in host.roles for host in self.hosts for role in ("web", "worker", "beat")):
            raise FieldProblem(("hosts",), "no host runs the app (roles web, worker or beat)")
        self._backup_rules()
        return self

    def _backup_rules(self) -> None:
        if self.backup is None:
            return
        if not self.hosts_with("db"):
            raise FieldProblem(("backup",), "backs up the 'db' host's Postgres, and no host has the 'db' role")
        if self.backup.bucket is None and self.storage is None:
            raise FieldProblem(("backup", "bucket"), "required when there is no 'storage' section to take it from")
        endpoint = self.backup_endpoint()
        if endpoint is not None:
            scheme, host, _ = split_endpoint(endpoint)
            field = ("backup", "endpoint_url") if self.backup.endpoint_url else ("storage", "endpoint_url")
            if scheme != "https":
                raise FieldProblem(field, "pgBackRest reaches S3 only over HTTPS: give an https:// endpoint")
            if self.backup.verify_tls and is_ip(host):
                raise FieldProblem(field, "pgBackRest checks the certificate's DNS name, not IP addresses: "
                                          "use a host name for the backup endpoint")

    # The backup repository, with the storage section's values as defaults.
    def backup_endpoint(self) -> str | None:
        if self.backup is None:
            return None
        return self.backup.endpoint_url or (self.storage.endpoint_url if self.storage else None)

    def backup_bucket(self) -> str:
        assert self.backup is not None
        return self.backup.bucket or self.storage.bucket  # type: ignore[union-attr]

    def backup_region(self) -> str:
        assert self.backup is not None
        return self.backup.region or (self.storage.region if self.storage else "us-east-1")

    def backup_ca_file(self) -> Path | None:
        assert self.backup is not None
        return self.backup.ca_file or (self.storage.ca_file if self.storage else None)

    # Derived names, in one place so units, paths and checks agree.
    def resolved_app_path(self, app: App) -> str:
        return self.app_path or f"/srv/{app.name}"

    def resolved_app_user(self, app: App) -> str:
        return self.app_user or app.name

    def hosts_with(self, role: str) -> list[Host]:
        return [host for host in self.hosts if role in host.roles]


class Inventory(_Model):
    app: App
    environments: dict[str, Environment] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _plain_strings(cls, data: Any) -> Any:
        plain_strings(data)
        return data

    @field_validator("environments", mode="before")
    @classmethod
    def _env_names(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name in value:
                if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", name):
                    raise FieldProblem((str(name),), "environment names are lower case letters, digits, '-' and '_'")
        return value

    @model_validator(mode="after")
    def _app_user_of_own(self) -> "Inventory":
        """Without ``app_user``, the app runs as a user named after it: that must not be a system account."""
        for name, env in self.environments.items():
            if env.app_user is None:
                try:
                    check_app_user(self.app.name)
                except ValueError as exc:
                    raise FieldProblem(("app", "name"), f"{exc}; set app_user in environment {name!r}") from None
            if env.db.name is None:
                try:
                    check_identifier(self.app.name.replace("-", "_"))
                except ValueError as exc:
                    raise FieldProblem(("app", "name"), f"as the database name: {exc}; set db.name in "
                                                        f"environment {name!r}") from None
        return self

    @model_validator(mode="after")
    def _no_app_secret_in_env(self) -> "Inventory":
        """The app's own names for its key and extra secrets are secrets too (like SM_SECRET_KEY)."""
        secret = {self.app.settings.secret_key, *self.app.settings.secrets}
        for name, env in self.environments.items():
            for key in env.env:
                if key in secret:
                    raise FieldProblem(("environments", name, "env", key),
                                       "is a secret of the app (app.settings): keep it in the secrets backend, "
                                       "not in the inventory")
        return self
