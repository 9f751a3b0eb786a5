"""``smship build``: a release built once, for CI to deploy many times with --release."""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task
from rich.console import Console

from smship.errors import SmshipError
from smship.inventory import InventoryError, load


@task(help={
    "app": "The app's source directory (default: app.source from the inventory).",
    "ref": "Git commit, branch or tag to build (default: HEAD).",
    "dirty": "Build the working tree, uncommitted changes included.",
    "output": "Write the release as an archive here (.tar.zst, .tar.gz or .tar); "
              "without it the release stays in smship's build cache and its path is printed.",
    "inventory": "Inventory file to read app.source from (default: smship.yml, or $SMSHIP_INVENTORY).",
    "python": "The hosts' Python version the wheels are for: 3.13 (Debian 13, the default) or 3.11 "
              "(Debian 12). A deploy refuses a release built for another Python than its hosts run.",
})
def build(c, app=None, ref="HEAD", dirty=False, output=None, inventory=None, python=None):
    """Build a release: the app at a commit, its front end and an offline wheelhouse.

    The same build `smship deploy` does, without touching any host: CI runs
    `smship build --output release.tar.zst` once, then `smship deploy ENV
    --release release.tar.zst` for each environment. Repeat builds reuse the
    cached front end and wheels, so only changed parts cost time.
    """
    from smship.release import TRIXIE, archive_release, build_release, cache_dir, target_for_version
    from smship.settings import Settings

    console = Console(stderr=True, highlight=False)
    try:
        source = Path(app) if app else _source_from_inventory(inventory or Settings().inventory)
        target = target_for_version(python) if python else TRIXIE
        release = build_release(source, ref=ref, dirty=dirty, work_dir=cache_dir() / "releases", target=target,
                                progress=lambda line: console.print(f"    {line}", markup=False))
        for warning in release.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        if output:
            path = archive_release(release, Path(output))
            print(path)
        else:
            print(release.path)
    except (SmshipError, InventoryError) as exc:
        raise Exit(f"error: {exc}", code=1) from None


def _source_from_inventory(path) -> Path:
    return load(Path(path)).inventory.app.source
