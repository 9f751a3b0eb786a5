"""Preflight for the key that signs every session: no deploy of a guessable one.

Runs before any host is contacted. Development and testing environments may
use anything; every other environment (production is the default) needs a
key that passes :func:`smship.secretkey.weakness`.
"""

from __future__ import annotations

from smship.appenv import app_environment
from smship.errors import SmshipError
from smship.inventory import Environment
from smship.secretkey import DEVELOPMENT_ENVIRONMENTS, weakness
from smship.secrets import backend_for


def require_strong_key(env_name: str, env: Environment) -> None:
    """Raise naming the secrets source when a non-development environment has a weak key."""
    mode = app_environment(env)
    if mode in DEVELOPMENT_ENVIRONMENTS:
        return
    backend = backend_for(env.secrets)
    problem = weakness(backend.read().get("SM_SECRET_KEY"))
    if problem:
        raise SmshipError(f"{backend.description}: {problem}; refusing to deploy {env_name} "
                          f"(SM_ENVIRONMENT={mode}; only development and testing may run with such a key)")
