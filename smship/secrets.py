"""Where secret values come from: a local file, or the environment (CI).

Values read here are rendered only into files shipped over stdin with mode
0600; they are never printed, logged or put on a command line.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from smship.errors import SmshipError
from smship.inventory import Secrets

# Names the env backend takes from the environment of the machine running smship.
KNOWN_SECRETS = ("SM_SECRET_KEY", "SM_DB_PASSWORD", "SM_REDIS_PASSWORD", "SM_DATABASE_URL",
                 "SM_REDIS_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


def parse_env_file(text: str, path: Path) -> dict[str, str]:
    values = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().replace("_", "").isalnum():
            raise SmshipError(f"{path}:{number}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _inside_git_checkout(path: Path) -> bool:
    probe = subprocess.run(["git", "-C", str(path.parent), "ls-files", "--error-unmatch", path.name],
                           capture_output=True)
    return probe.returncode == 0


def read_file_backend(path: Path) -> dict[str, str]:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SmshipError(f"{path}: secrets file does not exist") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SmshipError(f"{path}: secrets file is readable by group or others (mode {stat.S_IMODE(mode):04o}); run chmod 600 {path}")
    if _inside_git_checkout(path):
        raise SmshipError(f"{path}: secrets file is tracked by git; keep it outside the repository")
    return parse_env_file(path.read_text(), path)


def read_secrets(config: Secrets) -> dict[str, str]:
    """All secret values of an environment, by name."""
    if config.backend == "file":
        assert config.path is not None  # the inventory model requires it
        return read_file_backend(config.path)
    return {name: os.environ[name] for name in KNOWN_SECRETS if os.environ.get(name)}
