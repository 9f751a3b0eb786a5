"""``smship init``: a starting inventory for an existing app."""

from __future__ import annotations

import os
from pathlib import Path

from invoke import Exit, task


@task(help={
    "app": "The app's repository to read (default: the current directory).",
    "output": "Where to write the inventory (default: smship.yml in the current directory).",
    "force": "Replace the output file if it exists.",
})
def init(c, app=".", output="smship.yml", force=False):
    """Write a starting inventory by reading an existing app.

    Finds the ASGI app (FastAPI() assignments), the Celery app and its beat
    schedule, alembic.ini, the lock and its requires-python, the front end
    and its package manager, and the setting names the code reads
    (os.environ, pydantic BaseSettings fields and env_prefix). Each value
    is written with a comment saying where it was found, or marked as a
    GUESS. Nothing secret is written: hosts, domain, TLS files and the
    secrets file are <FILL IN> placeholders, and the inventory does not
    load until they are replaced. Nothing of the app is imported or run.
    """
    from smship.init import render, survey

    repo, target = Path(app), Path(output)
    if not repo.is_dir():
        raise Exit(f"error: --app {app}: no such directory", code=1)
    if target.exists() and not force:
        raise Exit(f"error: {target} exists; choose another --output or pass --force to replace it", code=1)
    text = render(survey(repo), target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, target)
    print(f"wrote {target}: replace each <FILL IN>, check each GUESS, then `smship check prod -i {target}`")
