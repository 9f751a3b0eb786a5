"""The build cache on the machine running smship, and publishing into it.

Entries are directories named by a content hash.  An entry is built in a
temporary sibling and renamed into place, so an entry that exists is
complete; an interrupted build leaves only a ``.tmp-*`` directory that the
next build ignores (and :func:`fresh_tmp` sweeps when it is old).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

ENV_VAR = "SMSHIP_CACHE_DIR"
STALE_SECONDS = 24 * 3600


def cache_dir(explicit: Path | None = None) -> Path:
    """``explicit``, else ``$SMSHIP_CACHE_DIR``, else ``~/.cache/smship``."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/smship").expanduser()


def fresh_tmp(parent: Path) -> Path:
    """A new temporary directory inside ``parent`` (same filesystem, so renames are atomic)."""
    parent.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in parent.glob(".tmp-*"):
        try:
            if now - old.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:
            pass
    return Path(tempfile.mkdtemp(prefix=".tmp-", dir=parent))


def publish(tmp: Path, final: Path) -> Path:
    """Rename a finished ``tmp`` to ``final``; if another build got there first, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError:
        if not final.is_dir():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return final
