"""The inventory's schema: the app, its hosts and environments, the whole inventory.

Every model refuses unknown fields and is frozen.  Rules that span fields (a
fleet's hosts, a backup's repository) are model validators here; an
environment's sections are in smship.inventory.sections, rules for one value
in smship.inventory.rules.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from smship.contract import AppContract, FieldProblem, env_map, python_version
from smship.inputrules import (check_app_path, check_app_user, check_identifier, check_user_name, plain_strings,
                               secret_like)
from smship.inventory.rules import (APP_NAME, ENV_KEY, HOST_NAME, JUMP, SECRET_KEYS, Role, check_address, is_ip,
                                    local_path, split_endpoint)
from smship.inventory.sections import (SSH, TLS, Backup, Beat, Checks, Db, Firewall, Health, Lb, Logs, Secrets,
                                       Storage, StrictModel, Web, Worker)


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


class Host(StrictModel):
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


class Environment(StrictModel):
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
    logs: Logs | None = None
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
        if self.db.pooler is not None and not self.hosts_with("db"):
            raise FieldProblem(("db", "pooler"), "runs on the 'db' host, and no host has the 'db' role")
        self._logs_rules()
        return self

    def _logs_rules(self) -> None:
        if self.logs is None:
            return
        names = [host.name for host in self.hosts]
        if self.logs.collector not in names:
            raise FieldProblem(("logs", "collector"), f"{self.logs.collector!r} is not a host of this environment "
                                                      f"(hosts: {', '.join(names)})")
        collector = self.hosts[names.index(self.logs.collector)]
        ssh_port = collector.port or self.ssh.port
        if self.logs.port in (22, ssh_port) or ("web" in collector.roles or "lb" in collector.roles) \
                and self.logs.port in (80, 443):
            raise FieldProblem(("logs", "port"), f"{self.logs.port} is already taken on the collector "
                                                 f"{collector.name} (SSH or the site)")

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


class Inventory(StrictModel):
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
