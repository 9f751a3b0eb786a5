"""The :class:`Release` value and the names of files at a release's root."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from smship.errors import SmshipError
from smship.release.files import digest_of

MANIFEST = "release.json"
RELEASE_ID_FILE = "RELEASE_ID"
WHEELS_DIR = "wheels"
REQUIREMENTS = "requirements.txt"
FORMAT = 1
# The manifest's digest of what a release is, whatever its id: see content_digest.
CONTENT = "content"


@dataclass(frozen=True)
class Release:
    """A built release on this machine.

    ``path`` is the release tree (``RELEASE_ID`` and ``release.json`` at its
    root).  ``wheels_path`` is its wheelhouse, a separate directory holding
    ``requirements.txt`` and the wheels, shipped once per ``deps_id`` to
    ``shared/wheels/<deps_id>/`` on hosts.
    """

    id: str
    path: Path
    manifest: dict
    wheels_path: Path
    deps_id: str
    alembic_heads: tuple[str, ...]
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def dirty(self) -> bool:
        return bool(self.manifest["dirty"])

    @property
    def content(self) -> str | None:
        """The manifest's :func:`content_digest`; None for a release built before it was recorded."""
        return self.manifest.get(CONTENT)


def content_digest(manifest: dict) -> str:
    """One sha256 over what a host would run: the tree's files and symlinks (but for the two files
    that name the release), the wheelhouse's ``deps_id``, the Python target, the front end's record
    (the domain it was built for, the URL web hosts serve it at), and whether the build was dirty
    (a deliberate working-tree build is never taken for the commit's).

    Built from the manifest alone, so the same commit built twice, at any time and under any
    release id, gives the same digest, and a loaded release can be checked against its own.
    """
    files = {rel: sha for rel, sha in manifest["files"].items() if rel not in (RELEASE_ID_FILE, MANIFEST)}
    digest = hashlib.sha256(digest_of(files, manifest.get("symlinks", {})).encode())
    digest.update(f"deps {manifest['deps_id']}\ntarget {manifest.get('target')}\n"
                  f"frontend {json.dumps(manifest.get('frontend'), sort_keys=True)}\n"
                  f"dirty {bool(manifest['dirty'])}\n".encode())
    return digest.hexdigest()


def read_manifest(release_path: Path) -> dict:
    path = release_path / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SmshipError(f"{release_path} is not a release: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise SmshipError(f"{path}: cannot read the manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SmshipError(f"{path}: not a release manifest of format {FORMAT}")
    missing = [k for k in ("id", "git_sha", "deps_id", "files", "wheels", "alembic_heads") if k not in data]
    if missing:
        raise SmshipError(f"{path}: manifest lacks {', '.join(missing)}")
    return data


def write_manifest(release_path: Path, manifest: dict) -> None:
    (release_path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def release_from_manifest(release_path: Path, manifest: dict, wheels_path: Path,
                          warnings: tuple[str, ...] = ()) -> Release:
    return Release(id=manifest["id"], path=release_path, manifest=manifest, wheels_path=wheels_path,
                   deps_id=manifest["deps_id"], alembic_heads=tuple(manifest["alembic_heads"]),
                   warnings=warnings)
