"""Where secret values come from, and where a rotated value is stored.

Backends, chosen per environment (``secrets.backend`` in the inventory):

``file``  a local ``KEY=value`` file, mode 0600, outside any git checkout.
          Rotation rewrites it atomically and keeps the value it replaces
          as ``NAME_PREVIOUS`` in the same file (one generation back).
``env``   the environment of the machine running smship (CI). smship cannot
          change a CI runner's secrets, so rotation there is done by the
          user: set the new value in the CI secret store, then
          ``smship rotate-secret ENV --resume`` rolls it out.
``aws-ssm``, ``aws-secretsmanager``   see :mod:`smship.secrets_aws`.

Every backend answers ``read()``, ``previous(name)`` (the value the last
store replaced), ``keeps_previous(name)`` (where, in words),
``check_writable(name)`` and ``store(name, value)``.

Values read here are rendered only into files shipped over stdin with mode
0600; they are never printed, logged or put on a command line.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

from smship.errors import SmshipError
from smship.inventory import Secrets

# Names the env backend takes from the environment of the machine running smship.
KNOWN_SECRETS = ("SM_SECRET_KEY", "SM_DB_PASSWORD", "SM_REDIS_PASSWORD", "SM_DATABASE_URL",
                 "SM_REDIS_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 # The lb -> web TLS CA of the environment (smship.upstreamtls); never shipped to the app.
                 "SMSHIP_UPSTREAM_CA_KEY")
PREVIOUS_SUFFIX = "_PREVIOUS"


class SecretsNotWritable(SmshipError):
    pass


def _entries(text: str, path: Path):
    """(line number, raw line, key or None, raw value) for each line of an env file."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            yield number, raw, None, ""
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().replace("_", "").isalnum():
            raise SmshipError(f"{path}:{number}: expected KEY=value")
        yield number, raw, key.strip(), value.strip()


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_env_file(text: str, path: Path) -> dict[str, str]:
    return {key: _unquote(value) for _, _, key, value in _entries(text, path) if key}


def _inside_git_checkout(path: Path) -> bool:
    probe = subprocess.run(["git", "-C", str(path.parent), "ls-files", "--error-unmatch", path.name],
                           capture_output=True)
    return probe.returncode == 0


def _checked_text(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SmshipError(f"{path}: secrets file does not exist") from None
    except OSError as exc:
        raise SmshipError(f"{path}: cannot read the secrets file: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise SmshipError(f"{path}: secrets file is not a regular file (a directory?); secrets.path names a file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SmshipError(f"{path}: secrets file is readable by group or others (mode {stat.S_IMODE(mode):04o}); run chmod 600 {path}")
    if _inside_git_checkout(path):
        raise SmshipError(f"{path}: secrets file is tracked by git; keep it outside the repository")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SmshipError(f"{path}: secrets file is not UTF-8 text") from None
    except OSError as exc:
        raise SmshipError(f"{path}: cannot read the secrets file: {exc.strerror}") from None


def read_file_backend(path: Path) -> dict[str, str]:
    return parse_env_file(_checked_text(path), path)


def replace_values(text: str, path: Path, name: str, value: str) -> str:
    """``text`` with ``name`` set to ``value`` and its old value kept as ``name_PREVIOUS``.

    Every other line (comments, order, other secrets) stays as it was; the old
    value is carried over exactly as it was written, quotes included.
    """
    previous_name = name + PREVIOUS_SUFFIX
    entries = list(_entries(text, path))
    old = next((raw_value for _, _, key, raw_value in entries if key == name), None)
    lines: list[str] = []
    for _, raw, key, _ in entries:
        if key == previous_name:
            continue
        if key == name:
            lines.append(f"{name}={value}")
            lines.append(f"{previous_name}={old}")
        else:
            lines.append(raw)
    if old is None:
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically; the new file is 0600 from its first byte."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class FileBackend:
    def __init__(self, path: Path):
        self.path = path
        self.description = f"secrets file {path}"

    def read(self) -> dict[str, str]:
        return read_file_backend(self.path)

    def check_writable(self, name: str) -> None:
        _checked_text(self.path)
        if not os.access(self.path.parent, os.W_OK):
            raise SecretsNotWritable(f"{self.path}: cannot write a new {name} here: the folder "
                                     f"{self.path.parent} is not writable by this user")

    def previous(self, name: str) -> str | None:
        return self.read().get(name + PREVIOUS_SUFFIX)

    def keeps_previous(self, name: str) -> str:
        return f"as {name}{PREVIOUS_SUFFIX} in the file"

    def store(self, name: str, value: str) -> None:
        """Set ``name`` to ``value``, keeping the value it replaces as ``name_PREVIOUS``."""
        write_private(self.path, replace_values(_checked_text(self.path), self.path, name, value))


class EnvBackend:
    description = "the environment of the machine running smship (secrets backend 'env')"

    def __init__(self, also: tuple[str, ...] = ()):
        # The app's own names (app.settings): its key, URLs and extra secrets.
        self.known = tuple(dict.fromkeys(KNOWN_SECRETS + tuple(also)))

    def read(self) -> dict[str, str]:
        names = self.known + tuple(n + PREVIOUS_SUFFIX for n in self.known)
        return {name: os.environ[name] for name in names if os.environ.get(name)}

    def previous(self, name: str) -> str | None:
        return self.read().get(name + PREVIOUS_SUFFIX)

    def keeps_previous(self, name: str) -> str:
        return f"as {name}{PREVIOUS_SUFFIX}, if you set it there"

    def store(self, name: str, value: str) -> None:
        self.check_writable(name)

    def check_writable(self, name: str) -> None:
        raise SecretsNotWritable(
            f"the 'env' secrets backend reads {name} from this machine's environment (a CI runner's "
            f"secrets), which smship cannot change. To rotate: generate a value (python3 -c 'import secrets; "
            f"print(secrets.token_urlsafe(48))'), store it as {name} in your CI secret store and keep the old "
            f"one as {name}{PREVIOUS_SUFFIX}, then run `smship rotate-secret ENV --resume`, which writes the "
            f"current value to every host that does not run it yet and restarts them")


def backend_for(config: Secrets, also: tuple[str, ...] = ()):
    """The backend ``config`` names; ``also``: more names the app reads (only the 'env' backend needs them)."""
    if config.backend == "file":
        assert config.path is not None  # the inventory model requires it
        return FileBackend(config.path)
    if config.backend == "aws-ssm":
        from smship.secrets_aws import SsmBackend
        return SsmBackend(config)
    if config.backend == "aws-secretsmanager":
        from smship.secrets_aws import SecretsManagerBackend
        return SecretsManagerBackend(config)
    return EnvBackend(also)


def read_secrets(config: Secrets, also: tuple[str, ...] = ()) -> dict[str, str]:
    """All secret values of an environment, by name."""
    return backend_for(config, also).read()
