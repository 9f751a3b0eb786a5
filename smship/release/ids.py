"""Release ids: ``20261125T093000Z-ab12cd3`` (UTC build time, short git sha, ``-dirty``)."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from smship.errors import SmshipError

ID_PATTERN = re.compile(r"(\d{8}T\d{6}Z)-([0-9a-f]{7,40})(-dirty)?")
SHORT_SHA = 7


def make_release_id(sha: str, *, dirty: bool, now: datetime | None = None) -> str:
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    release_id = f"{when:%Y%m%dT%H%M%SZ}-{sha[:SHORT_SHA]}" + ("-dirty" if dirty else "")
    check_release_id(release_id)
    return release_id


def check_release_id(release_id: str) -> str:
    """Return ``release_id`` if it is well formed (it becomes a path on hosts), else raise."""
    if not ID_PATTERN.fullmatch(release_id or ""):
        raise SmshipError(f"{release_id!r} is not a release id (expected like 20261125T093000Z-ab12cd3)")
    return release_id
