"""``build_release``: source + front end + wheelhouse + manifest, on the machine running smship.

Layout under ``work_dir`` (the same layout an archive unpacks to)::

    work_dir/<release id>/          the release tree (RELEASE_ID, release.json, app files)
    work_dir/wheels/<deps_id>/      its wheelhouse (requirements.txt + wheels)
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import smship
from smship.errors import SmshipError
from smship.release import cachedir
from smship.release.alembic_heads import alembic_heads
from smship.release.files import copy_tree, hash_tree, link_escapes, walk
from smship.release.frontend import build_frontend
from smship.release.ids import make_release_id
from smship.release.model import (FORMAT, RELEASE_ID_FILE, WHEELS_DIR, Release, release_from_manifest,
                                  write_manifest)
from smship.release.source import export
from smship.release.wheelhouse import TRIXIE, Target, build_wheelhouse, require_python

Progress = Callable[[str], None]


def build_release(source: Path, *, ref: str = "HEAD", dirty: bool = False, work_dir: Path,
                  python: str = sys.executable, progress: Progress | None = None,
                  cache_dir: Path | None = None, target: Target = TRIXIE,
                  now: datetime | None = None) -> Release:
    """Build a release of the app at ``source`` into ``work_dir`` and return it.

    ``ref`` is exported with ``git archive`` (only ``source``'s subtree when
    it is a subdirectory of the repository); ``dirty=True`` takes the working
    tree instead (tracked and untracked-but-not-ignored files).  ``python``
    runs ``pip download``; ``cache_dir`` defaults to ``$SMSHIP_CACHE_DIR`` or
    ``~/.cache/smship``.
    """
    say = progress or (lambda _m: None)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        say(f"warning: {message}")

    if dirty and ref != "HEAD":
        raise SmshipError("a dirty build takes the working tree; it cannot be combined with a ref")
    cache = cachedir.cache_dir(cache_dir)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    staging = cachedir.fresh_tmp(work_dir)
    try:
        tree = staging / "release"
        say(f"source: {'working tree' if dirty else ref} of {Path(source).resolve()}")
        info = export(Path(source), tree, ref=ref, dirty=dirty)
        require_python(tree, target)
        if info.uncommitted and not dirty:
            warn(f"uncommitted changes in {info.subdir or info.repo} are not included "
                 f"(building commit {info.sha[:7]}; use a dirty build to include them)")
        if not (tree / "main.py").is_file():
            warn("main.py is missing at the app root (the hosts run 'uvicorn main:app')")
        for rel, link in sorted(walk(tree)[1].items()):
            if link_escapes(rel, link):
                raise SmshipError(f"symlink {rel} points outside the app ({link})")

        release_id = make_release_id(info.sha, dirty=dirty, now=now)
        heads = alembic_heads(tree)
        if len(heads) > 1:
            warn(f"alembic has {len(heads)} heads ({', '.join(heads)}): 'alembic upgrade head' will refuse; "
                 "merge them")
        frontend = build_frontend(tree, cache, say)
        wheelhouse = build_wheelhouse(tree, cache, python=python, target=target, progress=say)

        (tree / RELEASE_ID_FILE).write_text(release_id + "\n")
        files, links = hash_tree(tree)
        wheel_hashes, _ = hash_tree(wheelhouse.path)
        manifest = {
            "format": FORMAT,
            "id": release_id,
            "git_sha": info.sha,
            "ref": info.ref,
            "dirty": dirty,
            "source_subdir": info.subdir,
            "built_at": now.isoformat(timespec="seconds"),
            "built_by": f"{_user()}@{socket.gethostname()}",
            "smship_version": smship.__version__,
            "python": target.python_version,
            "target": target.describe(),
            "deps_id": wheelhouse.deps_id,
            "alembic_heads": heads,
            "frontend": None if frontend is None else {"lock_sha256": frontend.lock_sha256,
                                                       "source_sha256": frontend.source_sha256},
            "files": files,
            "symlinks": links,
            "wheels": wheel_hashes,
        }
        write_manifest(tree, manifest)

        final = work_dir / release_id
        if final.exists():
            shutil.rmtree(final)
        os.rename(tree, final)
        wheels = work_dir / WHEELS_DIR / wheelhouse.deps_id
        if wheels.is_dir() and hash_tree(wheels)[0] != wheel_hashes:
            shutil.rmtree(wheels)
        if not wheels.is_dir():
            tmp = cachedir.fresh_tmp(wheels.parent)
            copy_tree(wheelhouse.path, tmp)
            cachedir.publish(tmp, wheels)
        say(f"built release {release_id} (deps {wheelhouse.deps_id})")
        cachedir.prune_builds(work_dir)
        return release_from_manifest(final, manifest, wheels, tuple(warnings))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:       # no passwd entry (some containers)
        return str(os.getuid())
