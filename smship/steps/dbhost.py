"""Talking to the db host's backup program (:mod:`smship.remote.pgagent`)."""

from __future__ import annotations

from typing import Any

from smship.backuprepo import cluster, stanza
from smship.context import EnvContext, targets_of
from smship.errors import SmshipError
from smship.remote import client as agent


def require_backup(ctx: EnvContext) -> None:
    if ctx.env.backup is None:
        raise SmshipError(f"{ctx.inventory.path}: environments.{ctx.name}.backup: not set; add a backup section "
                          f"and run 'smship provision {ctx.name} --restart-db' first")


def db_target(ctx: EnvContext):
    return targets_of(ctx, ctx.env.hosts_with("db")[:1])[0]


def call_db(ctx: EnvContext, fleet, target, op: str, timeout: float = 900, **fields: Any) -> dict[str, Any]:
    """One request to the backup program on ``target``; its answer, or SmshipError naming the host."""
    return agent.ask(fleet, target, agent.db(op, stanza(ctx.app), cluster(ctx.app, ctx.env), timeout, **fields))
