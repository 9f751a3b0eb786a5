"""Checking a release tree and its wheelhouse against ``release.json``."""

from __future__ import annotations

from pathlib import Path

from smship.errors import SmshipError
from smship.release.files import link_escapes, sha256_file, walk
from smship.release.ids import check_release_id
from smship.release.model import CONTENT, MANIFEST, RELEASE_ID_FILE, content_digest


def verify_release(release_path: Path, manifest: dict, wheels_path: Path) -> None:
    """Raise a one-line :class:`SmshipError` naming the first file that does not match."""
    label = f"release {manifest.get('id', release_path.name)}"
    check_release_id(manifest["id"])
    _verify_tree(release_path, manifest["files"], manifest.get("symlinks", {}), label,
                 skip=frozenset({MANIFEST}))
    recorded_id = (release_path / RELEASE_ID_FILE).read_text().strip()
    if recorded_id != manifest["id"]:
        raise SmshipError(f"{label}: {RELEASE_ID_FILE} says {recorded_id!r}, the manifest says {manifest['id']!r}")
    _verify_tree(wheels_path, manifest["wheels"], {}, f"{label} wheelhouse {manifest['deps_id']}")
    # A deploy of this release is skipped when its digest is the live one's: it must be the release's own.
    if CONTENT in manifest and manifest[CONTENT] != content_digest(manifest):
        raise SmshipError(f"{label}: its {CONTENT} digest in {MANIFEST} does not match its files (edited?)")


def _verify_tree(root: Path, expected: dict[str, str], links: dict[str, str], label: str,
                 skip: frozenset[str] = frozenset()) -> None:
    files, found_links = walk(root, skip=skip)
    for rel in sorted(expected):
        path = files.get(rel)
        if path is None:
            raise SmshipError(f"{label}: file {rel} is missing")
        if sha256_file(path) != expected[rel]:
            raise SmshipError(f"{label}: file {rel} does not match its sha256 in {MANIFEST} (modified?)")
    for rel in sorted(links):
        if found_links.get(rel) != links[rel]:
            raise SmshipError(f"{label}: symlink {rel} is missing or points elsewhere")
    extra = sorted(set(files) - set(expected)) + sorted(set(found_links) - set(links))
    if extra:
        raise SmshipError(f"{label}: file {extra[0]} is not in {MANIFEST} (added after the build?)")
    for rel in links:
        if link_escapes(rel, links[rel]):
            raise SmshipError(f"{label}: symlink {rel} points outside the release ({links[rel]})")
