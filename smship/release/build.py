"""``build_release``: source + front end + wheelhouse + manifest, on the machine running smship.

The release is the content of the Python project (``app.root``) in the
repository; a front end may live beside it (``../frontend``) and is built in
a checkout that keeps the two at their places in the repository.

Layout under ``work_dir`` (the same layout an archive unpacks to)::

    work_dir/<release id>/          the release tree (RELEASE_ID, release.json, app files)
    work_dir/wheels/<deps_id>/      its wheelhouse (requirements.txt + wheels)
"""

from __future__ import annotations

import getpass
import os
import posixpath
import shutil
import socket
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import smship
from smship.errors import SmshipError
from smship.contract import AppContract
from smship.release import cachedir
from smship.release.alembic_heads import alembic_heads
from smship.release.apppaths import AppPaths, within
from smship.release.files import copy_tree, hash_tree, link_escapes, sha256_file, walk
from smship.release.frontend import build_frontend
from smship.release.hashmemo import remembered_hashes
from smship.release.ids import make_release_id
from smship.release.locks import find_lock, requirement_lines, requires_python
from smship.release.model import (CONTENT, FORMAT, RELEASE_ID_FILE, WHEELS_DIR, Release, content_digest,
                                  read_manifest, release_from_manifest, write_manifest)
from smship.release.source import RepoFiles, export, locate
from smship.release.wheelhouse import TRIXIE, Target, build_wheelhouse, require_python

Progress = Callable[[str], None]
# Under the cache: the remembered hashes of the wheelhouses (smship.release.hashmemo).
HASHES_DIR = "hashes"
# Under the cache: uv lock exports, by what they read (smship.release.locks).
EXPORTS_DIR = "exports"


def build_release(source: Path, *, ref: str = "HEAD", dirty: bool = False, work_dir: Path,
                  python: str = sys.executable, progress: Progress | None = None,
                  cache_dir: Path | None = None, target: Target = TRIXIE,
                  now: datetime | None = None, contract: AppContract | None = None,
                  domain: str | None = None) -> Release:
    """Build a release of the app at ``source`` into ``work_dir`` and return it.

    ``contract`` (the inventory's ``app:``; default: the smpy layout) says
    where the Python project is (``root``, relative to ``source``), its lock,
    its front end and its migrations. The release is the content of ``root``
    at ``ref`` (``git archive``), or of the working tree with ``dirty=True``
    (tracked and untracked-but-not-ignored files), plus the built front end.
    ``domain`` is the environment's, for a front end whose build environment
    names ``{domain}``. ``python`` runs ``pip download``; ``cache_dir``
    defaults to ``$SMSHIP_CACHE_DIR`` or ``~/.cache/smship``.
    """
    say = progress or (lambda _m: None)
    contract = contract or AppContract()
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
    repo, source_subdir = locate(Path(source))
    paths = AppPaths.of(source_subdir, contract)
    staging = cachedir.fresh_tmp(work_dir)
    try:
        checkout = staging / "repo"
        tree = checkout / paths.root
        say(f"source: {'working tree' if dirty else ref} of {repo / paths.root}")
        info = export(repo / paths.root, tree, ref=ref, dirty=dirty)
        if info.uncommitted and not dirty:
            warn(f"uncommitted changes in {info.subdir or info.repo} are not included "
                 f"(building commit {info.sha[:7]}; use a dirty build to include them)")
        if paths.frontend is not None and within(paths.frontend, paths.root) is None \
                and (repo / paths.frontend).is_dir():
            export(repo / paths.frontend, checkout / paths.frontend, ref=info.sha if not dirty else "HEAD",
                   dirty=dirty)
        at_commit = RepoFiles(repo, info.sha, dirty)
        lock = find_lock(at_commit, paths.root, contract.lock)
        say(f"dependencies: {lock.describe()}")
        require_python(*requires_python(at_commit, lock), target)
        missing = web_module_missing(tree, contract.web_app)
        if missing:
            warn(missing)
        for rel, link in sorted(walk(tree)[1].items()):
            if link_escapes(rel, link):
                raise SmshipError(f"symlink {rel} points outside the app ({link})")

        release_id = make_release_id(info.sha, dirty=dirty, now=now)
        heads = migration_heads(tree, contract)
        if len(heads) > 1:
            warn(f"alembic has {len(heads)} heads ({', '.join(heads)}): 'alembic upgrade head' will refuse; "
                 "merge them")
        frontend = None
        if contract.frontend is not None and paths.frontend is not None and paths.output is not None:
            output = checkout / paths.output
            frontend = build_frontend(checkout / paths.frontend, output, contract.frontend, cache, say,
                                      domain=domain,
                                      output_from_client=posixpath.relpath(paths.output, paths.frontend or "."))
            if frontend is not None and within(paths.output, paths.root) is None:
                copy_tree(output, tree / paths.output_in_release)
        wheelhouse = build_wheelhouse(requirement_lines(at_commit, lock, cachedir.fresh_tmp(staging),
                                                        cache / EXPORTS_DIR), cache,
                                      python=python, target=target, progress=say)

        (tree / RELEASE_ID_FILE).write_text(release_id + "\n")
        files, links = hash_tree(tree)
        # The wheelhouses are cached trees: their hashes are remembered between builds.
        wheel_hashes, _ = remembered_hashes(wheelhouse.path, cache / HASHES_DIR)
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
            "lock": lock.path,
            "alembic_heads": heads,
            "frontend": None if frontend is None else {"lock_sha256": frontend.lock_sha256,
                                                       "source_sha256": frontend.source_sha256,
                                                       "output": paths.output_in_release,
                                                       "domain": frontend.domain,
                                                       # where web hosts serve it: a deploy ships it there
                                                       "url": contract.frontend.url},
            "files": files,
            "symlinks": links,
            "wheels": wheel_hashes,
        }
        manifest[CONTENT] = content_digest(manifest)
        write_manifest(tree, manifest)

        final, manifest = publish_tree(tree, manifest, work_dir, now)
        release_id = manifest["id"]
        wheels = work_dir / WHEELS_DIR / wheelhouse.deps_id
        if wheels.is_dir() and remembered_hashes(wheels, cache / HASHES_DIR)[0] != wheel_hashes:
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


def publish_tree(tree: Path, manifest: dict, work_dir: Path, now: datetime) -> tuple[Path, dict]:
    """Rename the built ``tree`` into ``work_dir`` under its release id; the path and manifest it got.

    Another build of the same commit in the same second (another deploy on this
    machine, for another environment's domain perhaps) may have taken the id:
    a tree of the same content is that build's and is used as it is; another
    content takes the next free second's id. A published tree is never
    replaced: a deploy may be shipping it.
    """
    offset = 0
    while True:
        final = work_dir / manifest["id"]
        try:
            os.rename(tree, final)
            return final, manifest
        except OSError:
            if not final.is_dir():
                raise
        try:
            theirs = read_manifest(final)
        except SmshipError:
            theirs = {}          # not a release we could use: its id is taken all the same
        if theirs.get(CONTENT) == manifest[CONTENT]:
            shutil.rmtree(tree)
            return final, theirs
        offset += 1
        release_id = make_release_id(manifest["git_sha"], dirty=manifest["dirty"], now=now + timedelta(seconds=offset))
        (tree / RELEASE_ID_FILE).write_text(release_id + "\n")
        manifest = {**manifest, "id": release_id,
                    "files": {**manifest["files"], RELEASE_ID_FILE: sha256_file(tree / RELEASE_ID_FILE)}}
        write_manifest(tree, manifest)


def web_module_missing(tree: Path, web_app: str) -> str | None:
    """A warning when the module of app.web.app is not importable from the release's root."""
    module = web_app.split(":", 1)[0]
    base = tree.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
        return None
    where = "/".join(module.split("."))
    return (f"{where}.py is missing at the app root (the hosts run 'uvicorn {web_app}' there; "
            "app.web.app names the ASGI app)")


def migration_heads(tree: Path, contract: AppContract) -> list[str]:
    """Alembic's heads in app.migrate's directory; none when the migration is not alembic's."""
    migrate = contract.migrate
    if migrate is None:
        return []
    words = migrate.command
    runs_alembic = posixpath.basename(words[0]) == "alembic" or any(
        words[i] == "-m" and words[i + 1] == "alembic" for i in range(len(words) - 1))
    if not runs_alembic:
        return []
    cwd = posixpath.normpath(migrate.cwd)
    for flag in ("-c", "--config"):
        if flag in words[:-1]:
            cwd = posixpath.normpath(posixpath.join(cwd, posixpath.dirname(words[words.index(flag) + 1])))
    if cwd == ".." or cwd.startswith("../"):
        return []
    return alembic_heads(tree, cwd)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:       # no passwd entry (some containers)
        return str(os.getuid())
