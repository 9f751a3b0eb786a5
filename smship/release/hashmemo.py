"""File hashes of a cached tree, remembered between builds by each file's identity.

Every build hashes its wheelhouse (tens of megabytes) for the manifest, and
again to see that the copy beside the releases is intact. The wheelhouse
seldom changes, so a file's hash is kept with what identifies its content on
this machine: size, modification time, inode and change time. The kernel
sets the change time on every write and every ``utime``, so a file rewritten
in place, even with its old modification time put back, is hashed anew. A file
changed in the last few seconds is not remembered: file times may be as coarse
as a clock tick, so a write just after the hashing could leave them unchanged.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from smship.release.cachedir import keep_json
from smship.release.files import sha256_bytes, sha256_file, walk

# A file whose change time is this recent is hashed again next time (see above).
SETTLED_SECONDS = 2


def _identity(path: Path) -> list[int]:
    info = path.stat()
    return [info.st_size, info.st_mtime_ns, info.st_ino, info.st_ctime_ns]


def memo_path(root: Path, memo_dir: Path) -> Path:
    """Where the hashes of ``root`` are kept: one file per tree, named by its absolute path."""
    return memo_dir / (sha256_bytes(str(Path(root).resolve()).encode())[:32] + ".json")


def _load(memo: Path, root: Path) -> dict[str, list]:
    try:
        data = json.loads(memo.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("root") != str(Path(root).resolve()):
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _save(memo: Path, root: Path, files: dict[str, list]) -> None:
    keep_json(memo, {"root": str(Path(root).resolve()), "files": files})
    _forget_gone(memo.parent)


def _forget_gone(memo_dir: Path) -> None:
    """The memos of trees that no longer exist (a pruned cache entry) are removed."""
    for memo in memo_dir.glob("*.json"):
        try:
            root = json.loads(memo.read_text()).get("root")
            if not isinstance(root, str) or not Path(root).is_dir():
                memo.unlink()
        except (OSError, ValueError, AttributeError):
            continue


def remembered_hashes(root: Path, memo_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """What :func:`smship.release.files.hash_tree` returns for ``root``, hashing only the files whose
    identity changed since the memo in ``memo_dir`` was written."""
    files, links = walk(Path(root))
    memo = memo_path(root, memo_dir)
    known = _load(memo, root)
    kept: dict[str, list] = {}
    hashes: dict[str, str] = {}
    settled = (time.time() - SETTLED_SECONDS) * 1e9
    for rel, path in sorted(files.items()):
        before = _identity(path)
        entry = known.get(rel)
        if isinstance(entry, list) and len(entry) == 5 and entry[:4] == before:
            hashes[rel], kept[rel] = entry[4], entry
            continue
        hashes[rel] = sha256_file(path)
        # Written while it was read, or too lately to tell a later write apart: hashed again next time.
        if _identity(path) == before and before[3] < settled:
            kept[rel] = [*before, hashes[rel]]
    if kept != known:
        _save(memo, root, kept)
    return hashes, dict(sorted(links.items()))
