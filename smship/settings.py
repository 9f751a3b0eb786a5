"""Settings that come from the environment of the machine running smship.

Every ``SMSHIP_*`` variable smship reads is a field here, and nothing else in
``smship/`` reads one from ``os.environ``: one place documents them, checks
them and names the variable when a value is wrong.  CI runners cannot edit
the inventory per run; the ``SSH`` ones override the inventory's ``ssh``
section for every environment.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from smship.errors import SmshipError
from smship.inputrules import check_user_name
from smship.inventory import SSH

PREFIX = "SMSHIP_"
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")


class SettingsError(SmshipError):
    """A bad ``SMSHIP_*`` value; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    inventory: Path = Field(Path("smship.yml"), description="Inventory file when -i is not given.")
    output: Literal["text", "json"] = Field("text", description="'text' or 'json' when -o is not given.")
    ssh_user: str | None = Field(None, description="SSH user for every host (overrides ssh.user).")
    ssh_identity: Path | None = Field(None, description="SSH private key (overrides ssh.identity).")
    known_hosts: Path | None = Field(None, description="known_hosts file (overrides ssh.known_hosts).")
    accept_unknown_hosts: bool | None = Field(None, description="Trust and record unknown host keys.")
    parallel: int | None = Field(None, ge=1, le=200, description="Hosts contacted at once (overrides ssh.parallel).")
    cache_dir: Path = Field(Path("~/.cache/smship"), description="Build cache (releases, wheels, front ends), "
                            "compiled templates, what hosts answered last.")
    lab_dir: Path = Field(Path("/var/lib/smship/lab"), description="Directory of `smship lab` when --dir is not given.")
    lab_bridge: str = Field("smshipbr0", description="Bridge interface a new lab creates.")
    lab_subnet: str = Field("192.168.250.0/24", description="IPv4 subnet a new lab's hosts get addresses from.")
    lab_cache: Path = Field(Path("/var/cache/smship/lab/images"), description="Where lab images are built and cached.")
    lab_distro: Literal["trixie", "bookworm"] = Field("trixie", description="Debian release of new lab hosts.")

    @field_validator("ssh_user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        return value if value is None else check_user_name(value)

    @field_validator("cache_dir", "lab_cache", "ssh_identity", "known_hosts", "inventory")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value if value is None else value.expanduser()

    @field_validator("lab_bridge")
    @classmethod
    def _bridge(cls, value: str) -> str:
        if not _IFNAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an interface name (1-15 letters, digits, '_', '.', '-', "
                             "starting with a letter or digit)")
        return value

    @field_validator("lab_subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 subnet such as 192.168.250.0/24") from None
        if net.prefixlen > 26:
            raise ValueError(f"{value} is too small; use a /24 or larger")
        return value

    def apply_to(self, ssh: SSH) -> SSH:
        """``ssh`` with every override that is set in the environment."""
        overrides = {
            "user": self.ssh_user,
            "identity": self.ssh_identity,
            "known_hosts": self.known_hosts,
            "accept_unknown_hosts": self.accept_unknown_hosts,
            "parallel": self.parallel,
        }
        return ssh.model_copy(update={k: v for k, v in overrides.items() if v is not None})


def variable(field: str) -> str:
    """The environment variable of a settings field: ``parallel`` → ``SMSHIP_PARALLEL``."""
    return PREFIX + field.upper()


def load_settings() -> Settings:
    """The settings of this process's environment, or :class:`SettingsError` naming the first bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        item = exc.errors()[0]
        name = variable(str(item["loc"][0])) if item["loc"] else PREFIX + "*"
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] in ("int_parsing", "greater_than_equal", "less_than_equal"):
            reason = "must be a whole number from 1 to 200"
        elif item["type"] == "literal_error":
            reason = reason.replace("Input should be", "must be")
        elif item["type"] == "bool_parsing":
            reason = "must be true or false"
        shown = str(item.get("input", ""))[:60]
        raise SettingsError(f"{name}={shown!r}: {reason}") from None

