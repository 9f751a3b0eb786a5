"""Alembic heads read statically from the revision files of the migration's directory (``host/`` by default).

Each revision file assigns ``revision`` and ``down_revision`` (a string, a
tuple/list of strings for a merge, or ``None`` for a root) at module level.
They are read with :mod:`ast`, so the app is never imported.
"""

from __future__ import annotations

import ast
import configparser
import os
from pathlib import Path

from smship.errors import SmshipError

DEFAULT_LOCATIONS = ("migrations", "alembic")


def version_dirs(host_dir: Path) -> list[Path]:
    """The versions directories named by ``host/alembic.ini`` (or the usual defaults)."""
    ini = host_dir / "alembic.ini"
    dirs: list[Path] = []
    if ini.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(ini)
        except configparser.Error as exc:
            raise SmshipError(f"{ini}: cannot parse ({exc})") from None
        section = parser["alembic"] if parser.has_section("alembic") else {}
        here = str(host_dir)

        def expand(value: str) -> Path:
            path = Path(value.replace("%(here)s", here).strip())
            return path if path.is_absolute() else host_dir / path

        locations = section.get("version_locations", "").strip()
        if locations:
            mode = section.get("path_separator", section.get("version_path_separator", "space")).strip()
            if mode == "newline":
                parts = locations.splitlines()
            elif mode in ("os", ":", ";"):
                parts = locations.split(os.pathsep if mode == "os" else mode)
            else:
                parts = locations.split()
            dirs = [expand(p) for p in parts if p.strip()]
        elif section.get("script_location", "").strip():
            script_location = section["script_location"].strip()
            if ":" in script_location and not script_location.startswith(("/", "%")):
                return []       # package resource (pkg:path): not a file layout we can read
            dirs = [expand(script_location) / "versions"]
    if not dirs:
        dirs = [host_dir / name / "versions" for name in DEFAULT_LOCATIONS]
    return [d for d in dirs if d.is_dir()]


def read_revision(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """``(revision, down_revisions)`` of one file, or ``None`` if it is not a revision file."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError as exc:
        raise SmshipError(f"{path}:{exc.lineno}: cannot parse migration ({exc.msg})") from None
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            value = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            targets = [node.target.id]
            value = node.value
        else:
            continue
        for name in targets:
            if name in ("revision", "down_revision"):
                try:
                    values[name] = ast.literal_eval(value)
                except ValueError:
                    raise SmshipError(f"{path}:{node.lineno}: {name} must be a literal") from None
    if "revision" not in values:
        return None
    revision = values["revision"]
    if not isinstance(revision, str) or not revision:
        raise SmshipError(f"{path}: revision must be a non-empty string")
    down = values.get("down_revision")
    if down is None:
        downs: tuple[str, ...] = ()
    elif isinstance(down, str):
        downs = (down,)
    elif isinstance(down, (tuple, list)) and all(isinstance(d, str) for d in down):
        downs = tuple(down)
    else:
        raise SmshipError(f"{path}: down_revision must be a string, a tuple of strings or None")
    return revision, downs


def heads_of(revisions: dict[str, tuple[str, ...]], where: dict[str, Path] | None = None) -> list[str]:
    """Revisions no other revision builds on, sorted."""
    where = where or {}
    referenced: set[str] = set()
    for revision, downs in revisions.items():
        for down in downs:
            if down not in revisions:
                origin = where.get(revision, revision)
                raise SmshipError(f"{origin}: down_revision {down!r} names no known revision")
            referenced.add(down)
    return sorted(set(revisions) - referenced)


def alembic_heads(app_dir: Path, cwd: str = "host") -> list[str]:
    """The heads of the app's migrations (empty if it has none); ``cwd`` holds alembic.ini (app.migrate.cwd)."""
    host_dir = app_dir / cwd
    revisions: dict[str, tuple[str, ...]] = {}
    where: dict[str, Path] = {}
    for directory in version_dirs(host_dir):
        for path in sorted(directory.rglob("*.py")):
            if "__pycache__" in path.parts:
                continue
            found = read_revision(path)
            if found is None:
                continue
            revision, downs = found
            if revision in revisions:
                raise SmshipError(f"{path}: revision {revision!r} is also defined in {where[revision]}")
            revisions[revision] = downs
            where[revision] = path
    return heads_of(revisions, where)
