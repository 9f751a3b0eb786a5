"""The front end, as ``app.frontend`` declares it: install, build, and the output it leaves.

The smpy defaults are ``npm ci && npm run build`` in ``client_app/`` into
``static/dist/``. Two caches keep repeat builds fast:

* ``node/<key>/node_modules``: installed once per ``package-lock.json`` (or,
  without a lock, per ``package.json``), then linked into the build;
* ``static/<key>/dist``: the built output, keyed by the front end's files and
  what shapes the build (commands, build environment, output path); when it
  exists the build is skipped entirely.

npm never sees the environment of the machine running smship (where a CI's
secrets live): only a short list of harmless variables, npm's own settings
and the declared build environment (see :func:`smship.release.proc.run`).
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from smship.contract import Frontend
from smship.errors import SmshipError
from smship.release import cachedir, proc
from smship.release.files import copy_tree, sha256_bytes, sha256_file, tree_digest

NPM_ENV = {"NPM_CONFIG_UPDATE_NOTIFIER": "false", "NPM_CONFIG_FUND": "false", "NPM_CONFIG_AUDIT": "false"}
NPM_LOCK = "package-lock.json"
DOMAIN = "{domain}"


@dataclass(frozen=True)
class FrontendResult:
    lock_sha256: str    # of package-lock.json, or of package.json when there is no lock
    source_sha256: str
    installed: bool     # the install command ran in this build
    built: bool         # the build command ran in this build
    lock: str = NPM_LOCK
    domain: str | None = None   # the domain the build environment named, if it names one


def build_env(front: Frontend, domain: str | None) -> dict[str, str]:
    """The declared build environment; a ``{domain}`` in it needs the environment's domain."""
    if domain is None and any(DOMAIN in value for value in front.env.values()):
        names = ", ".join(sorted(k for k, v in front.env.items() if DOMAIN in v))
        raise SmshipError(f"app.frontend.env ({names}) uses {DOMAIN}: build for an environment "
                          "(smship build --env ENV, or --domain NAME) so the front end knows its domain")
    return front.build_env(domain or "")


def build_frontend(client: Path, output: Path, front: Frontend, cache: Path, progress: Callable[[str], None],
                   *, domain: str | None = None, output_from_client: str = "") -> FrontendResult | None:
    """Build the front end in ``client`` so its files land in ``output``; ``None`` without a package.json.

    ``output_from_client`` is ``output`` relative to ``client``: with the
    build environment it keys the cached build.
    """
    shown = front.dir
    if not (client / "package.json").is_file():
        progress(f"front end: no {shown}/package.json, nothing to build")
        return None
    env = build_env(front, domain)
    if not any(DOMAIN in value for value in front.env.values()):
        domain = None
    has_lock = (client / NPM_LOCK).is_file()
    lock = client / (NPM_LOCK if has_lock else "package.json")
    lock_sha = sha256_file(lock)
    source_sha = tree_digest(client, skip=frozenset({"node_modules"}))
    install = front.install_command(has_lock)

    built_cache = cache / "static" / _build_key(source_sha, front, env, output_from_client)
    if _complete(built_cache / "dist", front):
        progress(f"front end: reusing the build of {shown} {source_sha[:12]}")
        _replace(output, built_cache / "dist")
        return FrontendResult(lock_sha, source_sha, installed=False, built=False, lock=lock.name, domain=domain)

    modules, installed = node_modules(client, _install_key(lock_sha, front, has_lock), install, cache, progress,
                                      shown)
    link = client / "node_modules"
    if os.path.lexists(link):
        if link.is_symlink() or link.is_file():
            link.unlink()
        else:
            shutil.rmtree(link)
    os.symlink(modules, link, target_is_directory=True)
    try:
        progress(f"front end: {' '.join(front.build)}")
        proc.run(front.build, cwd=client, env={**NPM_ENV, **env}, what=f"{' '.join(front.build)} ({shown})")
    finally:
        link.unlink()
    if front.manifest is not None and not (output / front.manifest).is_file():
        raise SmshipError(f"{' '.join(front.build)} did not write {posixpath.join(front.output, front.manifest)} "
                          "(app.frontend.manifest; null if the build writes none; for Vite: manifest: true)")
    if not output.is_dir():
        raise SmshipError(f"{' '.join(front.build)} in {shown} did not write {front.output} (app.frontend.output, "
                          "relative to app.root)")

    tmp = cachedir.fresh_tmp(built_cache.parent)
    copy_tree(output, tmp / "dist")
    cachedir.publish(tmp, built_cache)
    return FrontendResult(lock_sha, source_sha, installed=installed, built=True, lock=lock.name, domain=domain)


def _complete(dist: Path, front: Frontend) -> bool:
    if front.manifest is not None:
        return (dist / front.manifest).is_file()
    return dist.is_dir()


def _build_key(source_sha: str, front: Frontend, env: dict[str, str], output_from_client: str) -> str:
    """The smpy defaults keep the key they always had (the source's hash), so caches stay warm."""
    shape = {"build": front.build, "install": front.install, "env": env, "output": output_from_client}
    if shape == {"build": Frontend().build, "install": None, "env": {}, "output": "../static/dist"}:
        return source_sha
    return sha256_bytes((source_sha + json.dumps(shape, sort_keys=True)).encode())


def _install_key(lock_sha: str, front: Frontend, has_lock: bool) -> str:
    if front.install is None and has_lock:
        return lock_sha
    return sha256_bytes(json.dumps({"lock": lock_sha, "install": front.install_command(has_lock)}).encode())


def node_modules(client: Path, key: str, install: list[str], cache: Path, progress: Callable[[str], None],
                 shown: str) -> tuple[Path, bool]:
    """The cached ``node_modules`` for this lock, running the install only when absent."""
    entry = cache / "node" / key
    if (entry / "node_modules").is_dir():
        progress(f"front end: reusing node_modules {key[:12]}")
        return entry / "node_modules", False
    progress(f"front end: {' '.join(install)}")
    tmp = cachedir.fresh_tmp(entry.parent)
    for name in ("package.json", NPM_LOCK, ".npmrc"):
        if (client / name).is_file():
            shutil.copy2(client / name, tmp / name)
    proc.run(install, cwd=tmp, env=NPM_ENV, what=f"{' '.join(install)} ({shown})")
    (tmp / "node_modules").mkdir(exist_ok=True)      # a lock without packages installs nothing
    cachedir.publish(tmp, entry)
    return entry / "node_modules", True


def _replace(dist: Path, cached: Path) -> None:
    if dist.exists():
        shutil.rmtree(dist)
    dist.parent.mkdir(parents=True, exist_ok=True)
    copy_tree(cached, dist)
