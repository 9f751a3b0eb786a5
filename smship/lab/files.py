"""Files a lab writes for its users: inventory, ssh_config, known_hosts, client key,
secrets. Rendering functions are pure; writers only touch the lab directory."""

from __future__ import annotations

import os
import secrets as _secrets
from pathlib import Path
from typing import Sequence

import yaml

from smship.appname import name_of_app
from smship.lab.system import LabError, run

ENVIRONMENT = "lab"
KEY_NAME = "id_ed25519"


def topology(count: int) -> list[list[str]]:
    """Roles of lab1..labN, shaped like a production topology."""
    if count < 1:
        raise LabError("a lab needs at least one host")
    if count == 1:
        return [["web", "worker", "beat", "db"]]
    if count == 2:
        return [["db", "worker", "beat"], ["web"]]
    return [["db", "lb", "beat"]] + [["web", "worker"] for _ in range(count - 1)]


def host_names(count: int) -> list[str]:
    return [f"lab{i}" for i in range(1, count + 1)]


def render_inventory(labdir: Path, app_source: Path, hosts: Sequence[tuple[str, str]]) -> str:
    """The smship inventory (YAML) for hosts given as (name, address) in order; the app is
    named as ``smship init`` would name it."""
    app_name = name_of_app(app_source)
    roles = topology(len(hosts))
    labdir = Path(labdir)
    data = {
        "app": {"name": app_name, "source": str(Path(app_source).resolve()),
                "python": "/usr/bin/python3"},
        "environments": {
            ENVIRONMENT: {
                "domain": f"{app_name}.lab.test",
                "lab": True,
                "ssh": {"user": "deploy", "known_hosts": str(labdir / "known_hosts"),
                        "config": str(labdir / "ssh_config"),
                        "identity": str(labdir / KEY_NAME),
                        "accept_unknown_hosts": False},
                "tls": {"source": "self-signed"},
                "secrets": {"backend": "file", "path": str(labdir / "secrets.env")},
                # 15 processes (9, and during a roll a web batch's new slot and the
                # workers' new slots) x (2 + 3) stays under Postgres' 100 connections.
                "env": {"SM_ENVIRONMENT": "production", "SM_LOG_FORMAT": "json",
                        "SM_DB_POOL_SIZE": "2", "SM_DB_MAX_OVERFLOW": "3"},
                "web": {"workers": 2, "batch_size": 1},
                "hosts": [{"name": name, "address": address, "roles": list(r)}
                          for (name, address), r in zip(hosts, roles)],
            },
        },
    }
    header = ("# Written by `smship lab up`; rewritten on every lab up.\n"
              "# Hosts are throwaway systemd-nspawn containers on this machine.\n")
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _quote(value: str) -> str:
    if any(c in value for c in '"\n\r'):
        raise LabError(f"path {value!r} cannot be used in an ssh_config")
    return f'"{value}"'


def render_ssh_config(labdir: Path, hosts: Sequence[tuple[str, str]],
                      connect_timeout: int = 5) -> str:
    """ssh_config with one Host entry per lab host (matching its name and address)."""
    labdir = Path(labdir)
    lines = ["# Written by `smship lab up`. Use: ssh -F " + str(labdir / "ssh_config") + " lab1",
             ""]
    for name, address in hosts:
        lines += [
            f"Host {name} {address}",
            f"    HostName {address}",
            "    User deploy",
            "    Port 22",
            f"    IdentityFile {_quote(str(labdir / KEY_NAME))}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {_quote(str(labdir / 'known_hosts'))}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking yes",
            "    UpdateHostKeys no",
            "    PasswordAuthentication no",
            "    BatchMode yes",
            f"    ConnectTimeout {int(connect_timeout)}",
            "    ServerAliveInterval 5",
            "    ServerAliveCountMax 3",
            "    LogLevel ERROR",
            "",
        ]
    return "\n".join(lines)


def render_known_hosts(keys: Sequence[tuple[str, str, str]]) -> str:
    """known_hosts lines from (name, address, "ssh-ed25519 AAAA...")."""
    return "".join(f"{name},{address} {key}\n" for name, address, key in keys)


LAB_SECRET_NAMES = ("SM_SECRET_KEY", "SM_DB_PASSWORD", "SM_REDIS_PASSWORD")


def render_secrets(values: dict[str, str]) -> str:
    return ("# Lab secrets, generated once by `smship lab up`. Never reuse them elsewhere.\n"
            + "".join(f"{name}={values[name]}\n" for name in LAB_SECRET_NAMES))


# ---------------------------------------------------------------- writers

def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write atomically with the given mode (the file never exists with looser rights)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_keypair(labdir: Path) -> str:
    """The lab's client key (created once, then reused). Returns the public key line."""
    key = Path(labdir) / KEY_NAME
    pub = key.with_name(KEY_NAME + ".pub")
    if not (key.is_file() and pub.is_file()):
        key.unlink(missing_ok=True)
        pub.unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "smship-lab",
             "-f", str(key)])
    key.chmod(0o600)
    return pub.read_text().strip()


def ensure_secrets(labdir: Path) -> Path:
    """secrets.env with a strong value for each of LAB_SECRET_NAMES, generated once.

    A file from an older lab that lacks a name gets it added; existing values stay.
    """
    path = Path(labdir) / "secrets.env"
    values = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not name.startswith("#"):
                values[name.strip()] = value.strip()
    if any(name not in values for name in LAB_SECRET_NAMES):
        for name in LAB_SECRET_NAMES:
            values.setdefault(name, _secrets.token_urlsafe(48 if name == "SM_SECRET_KEY" else 24))
        write_text(path, render_secrets(values), mode=0o600)
    path.chmod(0o600)
    return path
