"""The inventory's rules for single values: names, addresses, S3 endpoints, local paths.

A check raises ValueError with the reason, which the models
(:mod:`smship.inventory.schema`) report as that field's problem.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationInfo

Role = Literal["web", "worker", "beat", "db", "lb"]
ROLES: tuple[str, ...] = Role.__args__  # type: ignore[attr-defined]

LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
HOST_NAME = re.compile(rf"{LABEL}")
DNS_NAME = re.compile(rf"{LABEL}(\.{LABEL})*\.?", re.IGNORECASE)
APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
ENV_KEY = re.compile(r"[A-Z_][A-Z0-9_]*")
JUMP = re.compile(r"(?:(?P<user>[^@]+)@)?(?P<host>[^@:\s/]+)(?::(?P<port>\d{1,5}))?")
PERCENT = re.compile(r"(\d{1,3})%")

# Secret values must come from a secrets backend, never from the plain env
# map that is printed by --check --diff and kept in version control.
SECRET_KEYS = frozenset({"SM_SECRET_KEY", "AWS_SECRET_ACCESS_KEY"})


def local_path(value: Any, info: ValidationInfo) -> Any:
    """Expand ``~`` and make relative paths relative to the inventory file."""
    if value is None:
        return None
    path = Path(str(value)).expanduser()
    base = (info.context or {}).get("base_dir")
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def check_address(value: str) -> str:
    """An IP address or a DNS name; anything else is refused."""
    if is_ip(value):
        return value
    if len(value) > 253 or not DNS_NAME.fullmatch(value) or value.replace(".", "").isdigit():
        shown = repr(value) if len(value) <= 80 else f"{value[:60]!r}... ({len(value)} characters)"
        raise ValueError(f"{shown} is not an IP address or host name")
    return value


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
REGION = re.compile(r"[a-z0-9-]{2,32}")
# systemd OnCalendar expressions ("daily", "Mon *-*-* 03:00:00", "*-*-* 02,14:30"):
# checked for their characters here, by systemd when the timer loads.
ON_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ +-]{1,100}")


def check_bucket(value: str | None) -> str | None:
    if value is not None and (not BUCKET.fullmatch(value) or ".." in value or value.replace(".", "").isdigit()):
        raise ValueError(f"{value!r} is not an S3 bucket name (3-63 lower-case letters, digits, '.' and '-')")
    return value


ENDPOINT = re.compile(r"(https?)://([^/:?#\s]+)(?::(\d{1,5}))?/?")


def split_endpoint(url: str) -> tuple[str, str, int | None]:
    """``https://s3.example.com:9000`` → ``("https", "s3.example.com", 9000)``."""
    match = ENDPOINT.fullmatch(url)
    if not match:
        raise ValueError(f"{url!r} is not an http(s)://host[:port] URL")
    return match.group(1), match.group(2), int(match.group(3)) if match.group(3) else None


def check_region(value: str | None) -> str | None:
    if value is not None and not REGION.fullmatch(value):
        raise ValueError(f"{value!r} is not a region name such as eu-west-1")
    return value


def check_endpoint(value: str | None) -> str | None:
    if value is None:
        return None
    _, host, port = split_endpoint(value)
    check_address(host)
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"port in {value!r} is out of range")
    return value.rstrip("/")
