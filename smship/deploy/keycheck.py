"""Preflight for the key that signs every session: no deploy of a guessable one.

Runs before any host is contacted. Development and testing environments may
use anything; every other environment (production is the default) needs a
key that passes :func:`smship.secretkey.weakness`. The key is the one the
app reads (``app.settings.secret_key``), judged under that name.
"""

from __future__ import annotations

from smship.appenv import app_environment
from smship.errors import SmshipError
from smship.inventory import App, Environment
from smship.secretkey import DEVELOPMENT_ENVIRONMENTS, weakness
from smship.secrets import backend_for


def require_strong_key(env_name: str, app: App, env: Environment, values: dict[str, str] | None = None) -> None:
    """Raise naming the secrets source when a non-development environment has a weak key.

    ``values``: the backend's, when the command has read them already.
    """
    mode = app_environment(app, env)
    if mode in DEVELOPMENT_ENVIRONMENTS:
        return
    names = app.settings
    backend = backend_for(env.secrets, names.backend_names())
    values = backend.read() if values is None else values
    problem = weakness(values.get(names.secret_key), names.secret_key)
    if problem:
        raise SmshipError(f"{backend.description}: {problem}; refusing to deploy {env_name} "
                          f"({names.environment}={mode}; only development and testing may run with such a key)")
