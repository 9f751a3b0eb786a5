"""Settings that come from the environment of the machine running smship.

CI runners cannot edit the inventory per run; ``SMSHIP_*`` variables let them
point at another inventory, key or known_hosts file.  They override the
inventory's ``ssh`` section for every environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from smship.inventory import SSH


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SMSHIP_", extra="ignore")

    inventory: Path = Path("smship.yml")
    output: Literal["text", "json"] = "text"
    ssh_user: str | None = None
    ssh_identity: Path | None = None
    known_hosts: Path | None = None
    accept_unknown_hosts: bool | None = None
    parallel: int | None = None

    def apply_to(self, ssh: SSH) -> SSH:
        """``ssh`` with every override that is set in the environment."""
        overrides = {
            "user": self.ssh_user,
            "identity": self.ssh_identity.expanduser() if self.ssh_identity else None,
            "known_hosts": self.known_hosts.expanduser() if self.known_hosts else None,
            "accept_unknown_hosts": self.accept_unknown_hosts,
            "parallel": self.parallel,
        }
        return ssh.model_copy(update={k: v for k, v in overrides.items() if v is not None})
