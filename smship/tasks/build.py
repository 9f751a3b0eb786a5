"""``smship build``: a release built once, for CI to deploy many times with --release."""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task
from rich.console import Console

from smship.errors import SmshipError
from smship.inventory import InventoryError, load


@task(help={
    "app": "The app's repository (default: app.source from the inventory); without an inventory the "
           "smpy layout is assumed.",
    "ref": "Git commit, branch or tag to build (default: HEAD).",
    "dirty": "Build the working tree, uncommitted changes included.",
    "output": "Write the release as an archive here (.tar.zst, .tar.gz or .tar); "
              "without it the release stays in smship's build cache and its path is printed.",
    "env": "Build for this environment of the inventory: its domain goes into the front end's build "
           "environment (app.frontend.env's {domain}).",
    "domain": "The domain for app.frontend.env's {domain}, without naming an environment.",
    "inventory": "Inventory file to read the app from (default: smship.yml, or $SMSHIP_INVENTORY).",
    "python": "The hosts' Python version the wheels are for: 3.13 (Debian 13, the default) or 3.11 "
              "(Debian 12). A deploy refuses a release built for another Python than its hosts run.",
})
def build(c, app=None, ref="HEAD", dirty=False, output=None, env=None, domain=None, inventory=None, python=None):
    """Build a release: the app at a commit, its front end and an offline wheelhouse.

    The same build `smship deploy` does, without touching any host: CI runs
    `smship build --output release.tar.zst` once, then `smship deploy ENV
    --release release.tar.zst` for each environment. Repeat builds reuse the
    cached front end and wheels, so only changed parts cost time. The app
    contract (app.root, app.lock, app.frontend, app.migrate) comes from the
    inventory when there is one. A front end whose build environment names
    {domain} is built for one domain: pass --env ENV (or --domain NAME), and
    deploy that release to that environment only.
    """
    from smship.release import TRIXIE, archive_release, build_release, cache_dir, target_for_version
    from smship.settings import load_settings

    console = Console(stderr=True, highlight=False)
    try:
        if env and domain:
            raise SmshipError("--env and --domain both name the domain: pass one")
        path = Path(inventory or load_settings().inventory)
        loaded = load(path) if (env or inventory or not app or path.is_file()) else None
        contract = loaded.inventory.app if loaded else None
        source = Path(app) if app else contract.source
        if env:
            domain = loaded.environment(env).domain
        target = target_for_version(python) if python else TRIXIE
        release = build_release(source, ref=ref, dirty=dirty, work_dir=cache_dir() / "releases", target=target,
                                progress=lambda line: console.print(f"    {line}", markup=False),
                                contract=contract, domain=domain)
        for warning in release.warnings:
            console.print(f"[yellow]warning:[/] {warning}")
        if output:
            path = archive_release(release, Path(output))
            print(path)
        else:
            print(release.path)
    except (SmshipError, InventoryError) as exc:
        raise Exit(f"error: {exc}", code=1) from None
