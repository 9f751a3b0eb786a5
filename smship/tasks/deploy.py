"""``smship deploy``, ``rollback``, ``releases`` and ``unlock``."""

from __future__ import annotations

from smship.context import EnvContext
from smship.tasks.base import env_command


@env_command(help={
    "release": "Deploy this prebuilt release (directory or archive from 'smship build') instead of building.",
    "ref": "Git commit, branch or tag of the app to build (default: HEAD).",
    "dirty": "Build from the working tree, uncommitted changes included.",
    "limit": "Only these hosts or roles, comma separated.",
    "skip-check": "Go ahead although this preflight check fails (a name from 'smship check'; repeatable or a "
                  "comma list). Recorded in the audit log.",
    "force": "Ship and restart even when the release is live already on every selected host.",
}, iterable=["skip_check"])
def deploy(ctx: EnvContext, release=None, ref="HEAD", dirty=False, limit=None, skip_check=None, force=False):
    """Build a release, ship it, migrate once, and roll the web tier with health gates.

    Preflight (every host answers, the checks of 'smship check' pass, among
    them a strong signing key, the environment's lock is free; checks a
    deploy repairs, such as migrations, only warn; the environment's
    checks.skip are left out), build (or --release), rsync to every host in
    parallel, the migration (app.migrate, `alembic upgrade head` by default)
    and app.release_commands once before any restart, then web hosts in
    batches: drain (with an lb), switch `current`, restart, wait for the
    health endpoints (env.health) to answer as expected. A failing
    batch is switched back and halts the deploy; workers and beat restart
    last. Every run appends an audit line on the hosts.

    A release whose content (files, dependencies, Python target) is live
    already on every selected host, whose env files the inventory leaves as
    they are, is not deployed again: the deploy says "already live", naming
    the release, restarts nothing and records a no-op (--force deploys
    anyway). A --dirty build always deploys.
    """
    from smship.checklist.model import parse_skips
    from smship.checknames import CHECK_NAMES
    from smship.context import fleet_begun
    from smship.deploy.chosen import deploy_hosts

    skips = parse_skips(skip_check, CHECK_NAMES)
    chosen = deploy_hosts(ctx, limit)
    # Each host logs in and starts its agent while the deploy's own code loads.
    with fleet_begun(ctx) as (fleet, ahead):
        from smship.deploy.deploy import deploy as run

        return run(ctx, fleet, chosen, ahead=ahead, release_path=release, ref=ref, dirty=dirty, skip_checks=skips,
                   force=force)


@env_command(help={
    "to": "Release id to switch to (default: on each host, the release live before the live one was deployed, "
          "from the host's activation log).",
    "check": "Only report what would happen, including whether the schema is compatible.",
    "limit": "Only these hosts or roles, comma separated.",
})
def rollback(ctx: EnvContext, to=None, check=False, limit=None):
    """Switch every host back to the previous (or named) release; never touches the database.

    Same batches and health gates as deploy. Before switching it reports
    whether the target release's migrations know the database's current
    revision (expand/contract: older code must tolerate the newer schema).
    """
    from smship.deploy.rollback import rollback as run

    return run(ctx, to=to, check=check, limit=limit)


@env_command()
def releases(ctx: EnvContext):
    """List the releases on each host and which one is live."""
    from smship.deploy.rollback import releases as run

    return run(ctx)


@env_command(help={"yes": "Really remove the lock (only when the deploy holding it is gone)."})
def unlock(ctx: EnvContext, yes=False):
    """Show who holds the environment's deploy lock; with --yes, remove it."""
    from smship.deploy.unlock import unlock as run

    return run(ctx, yes=yes)
