"""Finding smship's built-in roles and templates, and the user's overrides.

A file of the same name in the user's project (the inventory's folder:
``templates/`` or ``roles/``) wins over the built-in one, so an operator can
change an nginx site or a unit without forking smship.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shlex
from pathlib import Path

import jinja2

from smship import scram
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


def psql_meta_literal(value: object) -> str:
    """One argument of a psql meta-command (``\\set name ARG``), single-quoted.

    Inside quotes psql reads ``''`` as a quote and processes backslash
    escapes, so both are escaped; a line break would end the command.
    """
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise ValueError("a psql argument must not contain control characters")
    return "'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


class UnrenderableValue(ValueError):
    """A value a file's format cannot hold; the message names its key, never the value."""


def redis_string(value: object, key: str) -> str:
    """One argument of a redis.conf directive, double-quoted.

    Redis splits a line into words at spaces and reads ``"..."`` with C-like
    escapes, so a space or ``#`` stays inside the word.  Control characters
    are refused rather than escaped: they are no one's intended password.
    """
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise UnrenderableValue(f"{key} has a control character (a line break?), which redis.conf cannot hold")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ini_value(value: object, key: str) -> str:
    """A value of a ``key=value`` line of an INI file (pgBackRest's, PgBouncer's).

    Both take the rest of the line, spaces trimmed, with no quoting or
    escapes: a value that would change there (a line break, leading or
    trailing space) is refused, naming ``key``.
    """
    text = str(value)
    if re.search(r"[\x00-\x1f\x7f]", text):
        raise UnrenderableValue(f"{key} has a control character (a line break?), which an INI file cannot hold")
    if text != text.strip():
        raise UnrenderableValue(f"{key} starts or ends with a space, which an INI file would drop")
    return text


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


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept in smship's cache across runs (every provision renders the same ones);
    None when the cache directory cannot be made. Entries are checked against their source."""
    from smship.settings import load_settings

    directory = load_settings().cache_dir / "jinja"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(directory))


def environment(project_dir: Path | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in search_path("templates", project_dir)]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["psql_meta_literal"] = psql_meta_literal
    env.filters["redis_string"] = redis_string
    env.filters["ini_value"] = ini_value
    env.filters["scram_verifier"] = lambda value: scram.verifier(str(value))
    env.filters["fingerprint"] = lambda value, name: key_fingerprint(name, str(value))
    env.filters["env_value"] = _env_value
    env.filters["hba_address"] = _hba_address
    env.filters["systemd_command"] = systemd_command
    env.filters["shell_quote"] = lambda value: shlex.quote(str(value))
    return env


def compiled_string(env: jinja2.Environment, source: str) -> jinja2.Template:
    """``env.from_string(source)``, through the environment's bytecode cache (one entry per source)."""
    cache = env.bytecode_cache
    if cache is None:
        return env.from_string(source)
    name = "<string " + hashlib.sha256(source.encode()).hexdigest() + ">"
    bucket = cache.get_bucket(env, name, None, source)
    if bucket.code is None:
        bucket.code = env.compile(source, name)
        cache.set_bucket(bucket)
    return env.template_class.from_code(env, bucket.code, env.make_globals(None))


def sandbox_properties(project_dir: Path | None = None) -> list[str]:
    """The app units' sandbox (``hardening.j2``) as ``Key=value`` properties, for ``systemd-run -p``.

    Transient units (migrations, release commands, probes) get exactly the
    settings the app's own units include, from the same template.
    """
    text = environment(project_dir).get_template("hardening.j2").render()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
