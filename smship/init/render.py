"""The starting inventory as YAML text, each value with a comment saying where it came from."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from smship.init.facts import Fact
from smship.init.survey import Survey

# A placeholder is not a valid value: the inventory refuses to load until it is replaced.
FILL_IN = "<FILL IN>"
ENVIRONMENT = "prod"
SMSHIP_DB_SECRETS = ("SM_DB_PASSWORD", "SM_REDIS_PASSWORD")


def _yaml(value: Any) -> str:
    """Any value as one line of YAML: every value of the file is quoted here."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000, allow_unicode=False)
    return text.removesuffix("\n...\n").strip()


def _comment(text: str) -> str:
    return "  # " + re.sub(r"[\x00-\x1f\x7f]", " ", text)


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, indent: int, text: str, comment: str | None = None) -> None:
        self.lines.append("  " * indent + text + (_comment(comment) if comment else ""))

    def note(self, indent: int, text: str) -> None:
        self.lines.append("  " * indent + "# " + re.sub(r"[\x00-\x1f\x7f]", " ", text))

    def fact(self, indent: int, key: str, fact: Fact) -> None:
        self.line(indent, f"{key}: {_yaml(fact.value)}", fact.comment)


def render(found: Survey, output: Path) -> str:
    """The inventory text for the app ``found`` describes, to be written at ``output``."""
    out = _Writer()
    out.note(0, f"Written by `smship init` from the app in {found.repo.name}/.")
    out.note(0, "Each value says where it was found in the app, or that it is a GUESS to check.")
    out.note(0, f"Replace every {FILL_IN} (hosts, domain, TLS, secrets file) before the first")
    out.note(0, "`smship provision prod`; inventory.example documents every field.")
    out.line(0, "app:")
    out.fact(1, "name", found.name)
    source = os.path.relpath(found.repo, output.resolve().parent)
    out.line(1, f"source: {_yaml(source)}", "the app's repository (a git checkout), relative to this file")
    _app(out, found)
    out.line(0, "")
    out.line(0, "environments:")
    out.line(1, f"{ENVIRONMENT}:")
    _environment(out, found)
    return "\n".join(out.lines) + "\n"


def _app(out: _Writer, found: Survey) -> None:
    out.fact(1, "root", found.root)
    if found.lock is not None:
        out.note(1, f"lock: {_yaml(found.lock.value)}  ({found.lock.comment}; smship finds it by itself)")
    else:
        out.note(1, "lock: no uv.lock, pylock.toml or requirements.txt found: add one and name it here")
    if found.requires_python is not None:
        out.note(1, f"The lock requires Python {found.requires_python.value} ({found.requires_python.comment}).")
    if found.python is not None:
        out.fact(1, "python", found.python)
    out.line(1, "web:")
    out.fact(2, "app", found.web)
    if found.worker is None:
        out.note(1, "No Celery app found: give no host the worker or beat role.")
    else:
        out.line(1, "worker:")
        out.fact(2, "app", found.worker)
        if found.beat is not None:
            out.note(1, f"beat runs the worker's Celery app; its schedule: {found.beat.comment}")
        else:
            out.note(1, "No beat schedule found: beat runs the worker's Celery app all the same.")
    if found.migrate.value is False:
        out.fact(1, "migrate", found.migrate)
    else:
        out.line(1, "migrate:", found.migrate.comment)
        out.line(2, f"command: {_yaml(found.migrate.value['command'])}")
        out.line(2, f"cwd: {_yaml(found.migrate.value['cwd'])}", "relative to root")
    if found.release_commands:
        out.line(1, "release_commands:")
        for fact in found.release_commands:
            out.line(2, f"- {_yaml(fact.value)}", fact.comment)
    else:
        out.line(1, "release_commands: []", "none found; e.g. a command that seeds the first user")
    _frontend(out, found.frontend)
    out.line(1, "settings:")
    for key in ("environment", "database_url", "database_driver", "redis_url", "broker_url", "secret_key",
                "file_storage_path", "log_format", "db_pool_size", "db_max_overflow"):
        out.fact(2, key, found.settings[key])
    if found.secrets:
        out.line(2, "secrets:", "copied from the secrets backend into the env file, by name")
        for fact in found.secrets:
            out.line(3, f"- {_yaml(fact.value)}", fact.comment)
    else:
        out.line(2, "secrets: []")
    if found.other_names:
        out.note(1, "Other names the code reads; set them in env: below where the app's defaults do not suit:")
        for name, where in found.other_names.items():
            out.note(1, f"  {name} ({where})")


def _frontend(out: _Writer, frontend: dict[str, Fact] | Fact) -> None:
    if isinstance(frontend, Fact):
        out.fact(1, "frontend", frontend)
        return
    out.line(1, "frontend:")
    for key in ("dir", "install", "build", "output", "url", "immutable", "manifest"):
        out.fact(2, key, frontend[key])
    env = frontend["env"]
    if env.value:
        out.line(2, "env:", env.comment)
        for name, value in env.value.items():
            out.line(3, f"{name}: {_yaml(value)}")
    else:
        out.fact(2, "env", env)


def _environment(out: _Writer, found: Survey) -> None:
    out.line(2, f"domain: {_yaml(FILL_IN)}", "FILL IN: the site's public name")
    out.line(2, "ssh:")
    out.line(3, "user: deploy", "GUESS: a login user with passwordless sudo on every host, or root")
    out.line(2, "tls:", "FILL IN: the certificate and key files (source: self-signed only for labs)")
    out.line(3, "source: files")
    out.line(3, f"certificate: {_yaml(FILL_IN)}")
    out.line(3, f"key: {_yaml(FILL_IN)}")
    names = [found.settings["secret_key"].value, *(fact.value for fact in found.secrets), *SMSHIP_DB_SECRETS]
    out.line(2, "secrets:")
    out.note(3, "FILL IN: a KEY=value file outside the repository (mode 0600) holding")
    out.note(3, "  " + ", ".join(names) + " (the last two are smship's own, for the db host)")
    out.line(3, "backend: file")
    out.line(3, f"path: {_yaml(FILL_IN)}")
    out.line(2, "health:")
    for key in ("live", "ready"):
        out.fact(3, key, found.health[key])
    if found.env:
        out.line(2, "env:", "plain settings, never secrets")
        for name, fact in found.env.items():
            out.fact(3, name, fact)
    out.line(2, "hosts:", "FILL IN: your hosts; roles are web, worker, beat, db and lb")
    jobs = ["worker", "beat", "db"] if found.worker is not None else ["db"]
    for name, roles in (("web1", ["web"]), ("jobs1", jobs)):
        out.line(3, f"- name: {name}")
        out.line(3, f"  address: {_yaml(FILL_IN)}")
        out.line(3, f"  roles: {_yaml(roles)}")
