"""Rules every value from the inventory obeys before it can reach a host.

Values end up in argv lists, SQL, ``pg_hba.conf``, unit files, certificates
and paths owned by root, so the inventory model refuses, by full matches,
whatever could change their meaning there: control characters and line
separators, option-like values, oversized values, system users and
directories, identifiers Postgres or the system reserve.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from smship.contract import CONTROL, FieldProblem

# Longest string anywhere in an inventory, and longest inventory file: real
# values are far shorter; the limits keep a pasted blob from reaching a host.
MAX_VALUE = 4096
MAX_KEY = 255
MAX_FILE_BYTES = 1024 * 1024

_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Accounts Debian and its packages create (uid < 1000): running the app as one
# of them hands the app that account's files, or root's.
SYSTEM_USERS = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy",
    "www-data", "backup", "list", "irc", "gnats", "nobody", "nogroup", "_apt", "messagebus", "sshd",
    "postgres", "redis", "nginx", "syslog", "uuidd", "tss", "polkitd", "dnsmasq", "avahi", "ntp", "chrony",
    "_chrony", "statd", "tcpdump", "mysql", "postfix", "Debian-exim", "memcache", "landscape", "pollinate",
    "usbmux", "rtkit", "colord", "geoclue", "pulse", "saned", "lightdm", "adm", "sudo", "staff", "shadow",
    "utmp", "operator", "halt", "shutdown", "ftp", "dbus",
})
# Directories the system owns: an app tree there (or a release swept from it)
# would change or delete what the host needs.
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/boot", "/proc",
                "/sys", "/dev", "/run", "/tmp", "/var/tmp", "/root", "/lost+found", "/var/run", "/var/lock")
SYSTEM_DIRS = frozenset({"/", "/var", "/var/lib", "/var/log", "/var/cache", "/var/spool", "/var/mail",
                         "/var/backups", "/var/opt", "/var/www", "/var/local", "/home", "/srv", "/opt",
                         "/mnt", "/media", "/usr/local", "/snap", "/var/lib/postgresql", "/var/lib/redis",
                         "/var/lib/smship"})
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9_./-]+")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# Names Postgres keeps for itself: its superuser and template databases; pg_ roles.
RESERVED_IDENTIFIERS = frozenset({"postgres", "template0", "template1", "public", "all", "replication",
                                  "samerole", "samegroup", "sameuser"})
# Plain ``env:`` values are printed by --check --diff and kept in version
# control; these names say the value is a credential.
_SECRET_NAME = re.compile(r"(?:.*_)?(?:PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIALS|ACCESS_KEY_ID)"
                          r"|.*SECRET.*")
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")


def check_user_name(value: str) -> str:
    """A POSIX user name (lower case, at most 32 characters, no leading '-')."""
    if not _USER.fullmatch(value):
        raise ValueError(f"{value[:40]!r} is not a user name (lower case letters, digits, '_' and '-', "
                         "starting with a letter or '_', at most 32)")
    return value


def check_app_user(value: str) -> str:
    """A user name that is not root or a system account."""
    check_user_name(value)
    if value in SYSTEM_USERS or value.startswith("systemd-"):
        raise ValueError(f"{value!r} is a system account; the app needs a user of its own (such as the app's name)")
    return value


def check_app_path(value: str) -> str:
    """An absolute, normalised path of plain characters outside the system's directories."""
    if not _PLAIN_PATH.fullmatch(value) or posixpath.normpath(value) != value or value.startswith("//"):
        raise ValueError("must be an absolute, normalised path of plain characters (letters, digits, '_', '.', '-', "
                         "'/'), such as /srv/shop")
    if value in SYSTEM_DIRS or any(value == tree or value.startswith(tree + "/") for tree in SYSTEM_TREES):
        raise ValueError(f"{value} is a system directory; use a directory of the app's own, such as /srv/<app>")
    return value


def check_identifier(value: str) -> str:
    """A Postgres identifier that needs no quoting and is not one Postgres keeps for itself."""
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(f"{value[:70]!r} is not a database identifier (lower case letters, digits and '_', "
                         "starting with a letter or '_', at most 63)")
    if value in RESERVED_IDENTIFIERS or value.startswith("pg_"):
        raise ValueError(f"{value!r} is a name Postgres keeps for itself")
    return value


def secret_like(name: str, value: str) -> str | None:
    """Why ``name=value`` looks like a credential, or None."""
    if _SECRET_NAME.fullmatch(name):
        return "its name says it is a secret"
    if _URL_PASSWORD.search(value):
        return "its value is a URL with a password"
    return None


def _limit_problem(path: tuple, text: str, limit: int) -> FieldProblem | None:
    if CONTROL.search(text):
        return FieldProblem(path, "must be a single line without control characters")
    if len(text) > limit:
        return FieldProblem(path, f"is {len(text)} characters long; the limit is {limit}")
    return None


def plain_strings(data: Any, path: tuple = (), seen: set[int] | None = None) -> None:
    """Refuse control characters and oversized strings anywhere in ``data`` (keys and values), naming the place.

    YAML aliases share one object between places: each is walked once, so a
    file of nested aliases costs its size, not its expansion.
    """
    seen = set() if seen is None else seen
    if isinstance(data, (dict, list)):
        if id(data) in seen:
            return
        seen.add(id(data))
    if isinstance(data, dict):
        for key, item in data.items():
            # A key's characters are checked by the map it names (environment
            # names, variable names, fields); its length is checked here.
            if isinstance(key, str) and len(key) > MAX_KEY:
                raise FieldProblem(path + (key[:40] + "...",), f"is {len(key)} characters long; the limit is {MAX_KEY}")
            plain_strings(item, path + (key if isinstance(key, (str, int)) else str(key),), seen)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            plain_strings(item, path + (index,), seen)
    elif isinstance(data, str):
        problem = _limit_problem(path, data, MAX_VALUE)
        if problem:
            raise problem
