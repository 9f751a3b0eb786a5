"""Release archives (CI builds once, deploys many) and loading a prebuilt release.

An archive holds the same layout ``build_release`` leaves in its work dir::

    <release id>/...            the release tree
    wheels/<deps_id>/...        its wheelhouse
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from smship.errors import SmshipError
from smship.release import cachedir
from smship.release.files import walk
from smship.release.model import MANIFEST, WHEELS_DIR, Release, read_manifest, release_from_manifest
from smship.release.source import extract_all
from smship.release.verify import verify_release

SUFFIXES = (".tar.gz", ".tgz", ".tar.zst", ".tar")


def _kind(path: Path) -> str | None:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return {".tgz": ".tar.gz"}.get(suffix, suffix)
    return None


def archive_release(release: Release, out: Path) -> Path:
    """Write ``release`` and its wheelhouse to ``out`` (.tar.gz, .tar.zst or .tar).

    If ``out`` is an existing directory the archive is ``out/<id>.tar.gz``.
    Members are sorted with owner and group cleared, so the archive says
    nothing about the build machine's users.
    """
    out = Path(out)
    if out.is_dir():
        out = out / f"{release.id}.tar.gz"
    kind = _kind(out)
    if kind is None:
        raise SmshipError(f"{out}: unknown archive type; use .tar.gz, .tar.zst or .tar")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        raw = tmp if kind == ".tar" else tmp.with_name(tmp.name + ".tar")
        mode = "w:gz" if kind == ".tar.gz" else "w"
        with tarfile.open(raw if kind != ".tar.gz" else tmp, mode, format=tarfile.PAX_FORMAT) as tar:
            _add_tree(tar, release.path, release.id)
            _add_tree(tar, release.wheels_path, f"{WHEELS_DIR}/{release.deps_id}")
        if kind == ".tar.zst":
            _zstd(["zstd", "-q", "-T0", "-3", "-f", "--rm", str(raw), "-o", str(tmp)])
        tmp.replace(out)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".tar")):
            leftover.unlink(missing_ok=True)
    return out


def _add_tree(tar: tarfile.TarFile, root: Path, prefix: str) -> None:
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    files, links = walk(root)
    directories = sorted({prefix} | {f"{prefix}/{d}" for rel in [*files, *links]
                                    for d in _parents(rel)})
    for name in directories:
        info = clean(tarfile.TarInfo(name))
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    for rel in sorted([*files, *links]):
        tar.add(root / rel, arcname=f"{prefix}/{rel}", recursive=False, filter=clean)


def _parents(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _zstd(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, **kwargs)
    except FileNotFoundError:
        raise SmshipError("the zstd program is needed for .tar.zst archives (apt-get install zstd)") from None
    if done.returncode != 0:
        raise SmshipError(f"zstd failed: {done.stderr.decode(errors='replace').strip()}")
    return done


def load_release(path: Path, *, work_dir: Path | None = None, cache_dir: Path | None = None) -> Release:
    """A prebuilt release, verified file by file against its manifest.

    ``path`` is a release directory (its wheelhouse is looked for at
    ``../wheels/<deps_id>`` beside it, then in the build cache) or an archive
    from :func:`archive_release`, unpacked into ``work_dir`` (default: an entry
    of the build cache named by the archive's content, see :func:`_unpacked`).
    """
    path = Path(path)
    if not path.exists():
        raise SmshipError(f"{path}: no such release directory or archive")
    if path.is_dir():
        release_path = path
        manifest = read_manifest(release_path)
        candidates = [path.resolve().parent / WHEELS_DIR / manifest["deps_id"],
                      cachedir.cache_dir(cache_dir) / "wheels" / manifest["deps_id"]]
        wheels = next((c for c in candidates if c.is_dir()), None)
        if wheels is None:
            raise SmshipError(f"release {manifest['id']}: its wheelhouse {manifest['deps_id']} is not at "
                              f"{candidates[0]} nor in the build cache")
    else:
        kind = _kind(path)
        if kind is None:
            raise SmshipError(f"{path}: not a release directory nor a .tar.gz/.tar.zst/.tar archive")
        if work_dir is not None:
            dest = Path(work_dir)
            dest.mkdir(parents=True, exist_ok=True)
            _unpack(path, kind, dest)
        else:
            dest = _unpacked(path, kind, cachedir.cache_dir(cache_dir) / UNPACKED_DIR)
        tops = [p for p in dest.iterdir() if p.name != WHEELS_DIR and (p / MANIFEST).is_file()]
        if len(tops) != 1:
            raise SmshipError(f"{path}: expected one release directory in the archive, found {len(tops)}")
        release_path = tops[0]
        manifest = read_manifest(release_path)
        wheels = dest / WHEELS_DIR / manifest["deps_id"]
        if not wheels.is_dir():
            raise SmshipError(f"{path}: the archive lacks the wheelhouse {WHEELS_DIR}/{manifest['deps_id']}")
    if release_path.name != manifest["id"]:
        raise SmshipError(f"{release_path}: directory name differs from the manifest's id {manifest['id']}")
    verify_release(release_path, manifest, wheels)
    return release_from_manifest(release_path, manifest, wheels)


# In the build cache: archives unpacked for a deploy, each named by the archive's SHA-256.
UNPACKED_DIR = "unpacked"
KEEP_UNPACKED = 3


def _unpacked(path: Path, kind: str, parent: Path, keep: int = KEEP_UNPACKED) -> Path:
    """``path`` unpacked into a cache entry named by its content: the same archive deployed again (CI
    builds once and deploys many times) is not unpacked again, and nothing is left in /tmp. Only the
    ``keep`` entries used last are kept."""
    with path.open("rb") as archive:
        entry = parent / hashlib.file_digest(archive, "sha256").hexdigest()[:32]
    if not entry.is_dir():
        tmp = cachedir.fresh_tmp(parent)
        try:
            _unpack(path, kind, tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        entry = cachedir.publish(tmp, entry)
    os.utime(entry)
    cachedir.prune_least_used(parent, keep)
    return entry


def _unpack(path: Path, kind: str, dest: Path) -> None:
    try:
        if kind == ".tar.zst":
            data = _zstd(["zstd", "-q", "-d", "-c", str(path)]).stdout
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                extract_all(tar, dest)
        else:
            with tarfile.open(path, "r:gz" if kind == ".tar.gz" else "r:") as tar:
                extract_all(tar, dest)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise SmshipError(f"{path}: cannot unpack ({exc})") from None
