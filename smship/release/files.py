"""Hashing and copying release files."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def walk(root: Path, *, skip: frozenset[str] = frozenset()) -> tuple[dict[str, Path], dict[str, str]]:
    """Regular files and symlinks under ``root``, keyed by POSIX path relative to it.

    Returns ``(files, symlinks)``; symlinks map to their target text and are
    never followed.  Paths in ``skip`` (relative, POSIX) are left out, with
    everything below them.
    """
    files: dict[str, Path] = {}
    links: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        keep = []
        for name in sorted(dirnames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in skip:
                continue
            if (base / name).is_symlink():
                links[rel] = os.readlink(base / name)
            else:
                keep.append(name)
        dirnames[:] = keep
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel in skip:
                continue
            path = base / name
            if path.is_symlink():
                links[rel] = os.readlink(path)
            elif path.is_file():
                files[rel] = path
    return files, links


def hash_tree(root: Path, *, skip: frozenset[str] = frozenset()) -> tuple[dict[str, str], dict[str, str]]:
    """``({path: sha256}, {path: link target})`` for everything under ``root``."""
    files, links = walk(root, skip=skip)
    return {rel: sha256_file(path) for rel, path in sorted(files.items())}, dict(sorted(links.items()))


def tree_digest(root: Path, *, skip: frozenset[str] = frozenset()) -> str:
    """One sha256 over the names, contents and symlinks of a tree."""
    return digest_of(*hash_tree(root, skip=skip))


def digest_of(hashes: dict[str, str], links: dict[str, str]) -> str:
    """One sha256 over what :func:`hash_tree` found: the same tree gives the same digest on any machine."""
    digest = hashlib.sha256()
    for rel, value in sorted(hashes.items()):
        digest.update(f"f {rel} {value}\n".encode())
    for rel, target in sorted(links.items()):
        digest.update(f"l {rel} {target}\n".encode())
    return digest.hexdigest()


def copy_tree(src: Path, dst: Path) -> None:
    """Copy a tree, keeping symlinks as symlinks; hard-link files where possible (cache entries are immutable)."""
    def link_or_copy(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy, dirs_exist_ok=True)


def link_escapes(rel: str, target: str) -> bool:
    """Whether a symlink at ``rel`` (relative to a tree's root) points outside that tree."""
    if os.path.isabs(target):
        return True
    joined = os.path.normpath(os.path.join(os.path.dirname(rel), target))
    return joined == ".." or joined.startswith("../")
