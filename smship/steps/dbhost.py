"""Talking to the db host's backup program (:mod:`smship.remote.pgagent`)."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from smship.backuprepo import cluster, stanza
from smship.context import EnvContext, targets_of
from smship.errors import SmshipError
from smship.remote import client as agent

T = TypeVar("T")


def require_backup(ctx: EnvContext) -> None:
    if ctx.env.backup is None:
        raise SmshipError(f"{ctx.inventory.path}: environments.{ctx.name}.backup: not set; add a backup section "
                          f"and run 'smship provision {ctx.name} --restart-db' first")


def db_target(ctx: EnvContext):
    return targets_of(ctx, ctx.env.hosts_with("db")[:1])[0]


def call_db(ctx: EnvContext, fleet, target, op: Callable[..., agent.Request[T]], **fields: Any) -> T:
    """``op`` (a builder of smship.remote.client, e.g. ``agent.backup``) for this environment's stanza and
    cluster on ``target``; its answer, or SmshipError naming the host."""
    return agent.ask(fleet, target, op(stanza(ctx.app), cluster(ctx.app, ctx.env), **fields))
