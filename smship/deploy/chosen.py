"""The hosts a deploy goes to, and what it refuses before it contacts any of them."""

from __future__ import annotations

from smship.context import EnvContext, select_hosts
from smship.deploy.keycheck import require_strong_key
from smship.errors import SmshipError
from smship.hostroles import app_hosts


def deploy_hosts(ctx: EnvContext, limit: str | None) -> list:
    """The app hosts ``--limit`` names (every app host without it); refused when there is none, or when the
    environment's signing key is guessable."""
    chosen = app_hosts(select_hosts(ctx, limit))
    if not chosen:
        raise SmshipError(f"no host of {ctx.name} runs the app{' within --limit ' + limit if limit else ''}")
    require_strong_key(ctx.name, ctx.app, ctx.env, ctx.secrets)
    return chosen
