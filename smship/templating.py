"""Finding smship's built-in roles and templates, and the user's overrides.

A file of the same name in the user's project (the inventory's folder:
``templates/`` or ``roles/``) wins over the built-in one, so an operator can
change an nginx site or a unit without forking smship.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from pathlib import Path

import jinja2

from smship.remote.agent import key_fingerprint

_PACKAGE_DIR = Path(__file__).resolve().parent


def builtin_dir(kind: str) -> Path:
    """``roles`` or ``templates`` as installed in a wheel, or in a checkout."""
    for candidate in (_PACKAGE_DIR / "_data" / kind, _PACKAGE_DIR.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"smship's built-in {kind}/ folder is missing from this installation")


def search_path(kind: str, project_dir: Path | None) -> list[Path]:
    dirs = [project_dir / kind] if project_dir and (project_dir / kind).is_dir() else []
    return dirs + [builtin_dir(kind)]


def find(kind: str, name: str, project_dir: Path | None) -> Path:
    for directory in search_path(kind, project_dir):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"no {kind[:-1]} named {name!r} in {', '.join(map(str, search_path(kind, project_dir)))}")


def _sql_literal(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _env_value(value: object) -> str:
    """A value for a systemd EnvironmentFile= line, quoted when needed."""
    text = str(value)
    if "\n" in text:
        raise ValueError("environment values must be a single line")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]*", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def env_line(key: str, value: object) -> str:
    """One ``KEY=value`` line of an env file, quoted the way the env file template quotes it."""
    return f"{key}={_env_value(value)}"


def systemd_word(value: object) -> str:
    """One word of a systemd command line (ExecStart=), as systemd splits and expands it.

    ``%`` starts a specifier and ``$`` an environment variable in ExecStart=,
    even inside quotes, so both are doubled; anything beyond plain
    characters goes in double quotes with C-style escapes.
    """
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise ValueError("a systemd command line word must not contain control characters")
    text = text.replace("%", "%%").replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@+=:,./%$-]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_command(words: object) -> str:
    """Words joined into a systemd command line, each quoted by :func:`systemd_word`."""
    if isinstance(words, str):
        raise TypeError("systemd_command takes a list of words, not a string")
    return " ".join(systemd_word(word) for word in words)


def _hba_address(address: str) -> str:
    """pg_hba.conf wants an address with its mask, or a host name as is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    return f"{ip}/{ip.max_prefixlen}"


def environment(project_dir: Path | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in search_path("templates", project_dir)]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["sql_literal"] = _sql_literal
    env.filters["fingerprint"] = lambda value, name: key_fingerprint(name, str(value))
    env.filters["env_value"] = _env_value
    env.filters["hba_address"] = _hba_address
    env.filters["systemd_command"] = systemd_command
    env.filters["shell_quote"] = lambda value: shlex.quote(str(value))
    return env
