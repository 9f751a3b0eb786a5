"""The front end: ``npm ci && npm run build`` in ``client_app/`` → ``static/dist/``.

Two caches keep repeat builds fast:

* ``node/<sha256 of package-lock.json>/node_modules``: installed once per
  lock file, then linked into the build instead of running ``npm ci`` again;
* ``static/<hash of client_app's files>/dist``: the built output; when it
  exists the build is skipped entirely.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from smship.errors import SmshipError
from smship.release import cachedir, proc
from smship.release.files import copy_tree, sha256_file, tree_digest

CLIENT_DIR = "client_app"
DIST = Path("static/dist")
VITE_MANIFEST = Path(".vite/manifest.json")
NPM_ENV = {"NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false", "NPM_CONFIG_AUDIT": "false"}


@dataclass(frozen=True)
class FrontendResult:
    lock_sha256: str
    source_sha256: str
    installed: bool     # npm ci ran in this build
    built: bool         # npm run build ran in this build


def build_frontend(app: Path, cache: Path, progress: Callable[[str], None]) -> FrontendResult | None:
    """Build ``app/client_app`` into ``app/static/dist``; ``None`` if the app has no client_app."""
    client = app / CLIENT_DIR
    if not (client / "package.json").is_file():
        progress("front end: no client_app/package.json, nothing to build")
        return None
    lock = client / "package-lock.json"
    if not lock.is_file():
        raise SmshipError(f"{CLIENT_DIR}/package-lock.json is missing: commit it (npm ci needs it)")
    lock_sha = sha256_file(lock)
    source_sha = tree_digest(client, skip=frozenset({"node_modules"}))
    dist = app / DIST

    built_cache = cache / "static" / source_sha
    if (built_cache / "dist" / VITE_MANIFEST).is_file():
        progress(f"front end: reusing the build of client_app {source_sha[:12]}")
        _replace(dist, built_cache / "dist")
        return FrontendResult(lock_sha, source_sha, installed=False, built=False)

    modules, installed = node_modules(client, lock_sha, cache, progress)
    link = client / "node_modules"
    if os.path.lexists(link):
        if link.is_symlink() or link.is_file():
            link.unlink()
        else:
            shutil.rmtree(link)
    os.symlink(modules, link, target_is_directory=True)
    try:
        progress("front end: npm run build")
        proc.run(["npm", "run", "build"], cwd=client, env=NPM_ENV, what="npm run build (client_app)")
    finally:
        link.unlink()
    if not (dist / VITE_MANIFEST).is_file():
        raise SmshipError(f"npm run build did not write {DIST / VITE_MANIFEST}: the Vite config must "
                          "build into ../static/dist with manifest: true")

    tmp = cachedir.fresh_tmp(built_cache.parent)
    copy_tree(dist, tmp / "dist")
    cachedir.publish(tmp, built_cache)
    return FrontendResult(lock_sha, source_sha, installed=installed, built=True)


def node_modules(client: Path, lock_sha: str, cache: Path, progress: Callable[[str], None]) -> tuple[Path, bool]:
    """The cached ``node_modules`` for this lock file, running ``npm ci`` only when absent."""
    entry = cache / "node" / lock_sha
    if (entry / "node_modules").is_dir():
        progress(f"front end: reusing node_modules for package-lock {lock_sha[:12]}")
        return entry / "node_modules", False
    progress("front end: npm ci")
    tmp = cachedir.fresh_tmp(entry.parent)
    for name in ("package.json", "package-lock.json", ".npmrc"):
        if (client / name).is_file():
            shutil.copy2(client / name, tmp / name)
    proc.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=tmp, env=NPM_ENV, what="npm ci (client_app)")
    (tmp / "node_modules").mkdir(exist_ok=True)      # a lock without packages installs nothing
    cachedir.publish(tmp, entry)
    return entry / "node_modules", True


def _replace(dist: Path, cached: Path) -> None:
    if dist.exists():
        shutil.rmtree(dist)
    dist.parent.mkdir(parents=True, exist_ok=True)
    copy_tree(cached, dist)
