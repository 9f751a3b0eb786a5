"""The build cache on the machine running smship, and publishing into it.

Entries are directories named by a content hash.  An entry is built in a
temporary sibling and renamed into place, so an entry that exists is
complete; an interrupted build leaves only a ``.tmp-*`` directory that the
next build ignores (and :func:`fresh_tmp` sweeps when it is old).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

STALE_SECONDS = 24 * 3600


def cache_dir(explicit: Path | None = None) -> Path:
    """``explicit``, else ``$SMSHIP_CACHE_DIR``, else ``~/.cache/smship`` (smship.settings)."""
    from smship.settings import load_settings

    if explicit is not None:
        return Path(explicit)
    return load_settings().cache_dir


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


def keep_json(path: Path, value) -> bool:
    """``value`` as JSON at ``path``, written whole under a temporary name and renamed (a reader sees the
    old file or the new one); False when it could not be: a memo not kept only costs the next build."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(value))
        os.replace(partial, path)
        return True
    except OSError:
        return False


BUILD_NAME = re.compile(r"^\d{8}T\d{6}Z-")
KEEP_BUILDS = 10


def prune_builds(work_dir: Path, keep: int = KEEP_BUILDS) -> list[str]:
    """Remove all but the ``keep`` newest release builds in ``work_dir``; the names removed.

    Release ids start with their build time, so their names sort oldest first.
    Anything else in ``work_dir`` (the wheelhouses, temporary dirs) is left alone.
    """
    builds = sorted(p.name for p in Path(work_dir).iterdir() if p.is_dir() and BUILD_NAME.match(p.name))
    doomed = builds[:-keep] if keep > 0 else builds
    for name in doomed:
        shutil.rmtree(Path(work_dir) / name, ignore_errors=True)
    return doomed


def prune_least_used(parent: Path, keep: int) -> list[str]:
    """Remove all but the ``keep`` entries of ``parent`` used last (by modification time, which a use
    renews); temporary ``.tmp-*`` directories are :func:`fresh_tmp`'s. The names removed."""
    used = {}
    for entry in parent.iterdir():
        try:
            if entry.is_dir() and not entry.name.startswith(".tmp-"):
                used[entry.name] = entry.stat().st_mtime
        except FileNotFoundError:        # pruned by another smship meanwhile
            pass
    doomed = sorted(used, key=used.get, reverse=True)[keep:]
    for name in doomed:
        shutil.rmtree(parent / name, ignore_errors=True)
    return doomed
