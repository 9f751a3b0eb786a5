"""The app's name as smship writes it (units, paths, database, domain of a lab),
made from the project's own name so ``smship init`` and the lab agree on it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path


def app_name_from(source: str) -> str:
    """``source`` (a project or directory name) as a valid ``app.name``: lower case, dashes, ≤ 31 characters."""
    name = re.sub(r"[^a-z0-9-]+", "-", source.lower()).strip("-")
    return re.sub(r"^[^a-z]+", "", name)[:31].rstrip("-") or "app"


def project_name(directory: Path) -> str | None:
    """``[project].name`` of ``directory/pyproject.toml``, when there is one to read."""
    try:
        data = tomllib.loads((Path(directory) / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    name = (data.get("project") or {}).get("name")
    return name if isinstance(name, str) and name.strip() else None


def name_of_app(directory: Path) -> str:
    """The name for the app in ``directory``: its project's name, else the directory's."""
    directory = Path(directory).resolve()
    return app_name_from(project_name(directory) or directory.name)
