"""The decorator every environment command is declared with.

It gives each command the environment as its first argument plus the shared
``-i/--inventory`` and ``-o/--output`` options, loads and validates the
inventory before anything else happens, and turns smship's errors into one
line and a non-zero exit code instead of a traceback.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Callable

from invoke import Exit, task

from smship.context import EnvContext
from smship.errors import SmshipError
from smship.inventory import InventoryError

COMMON_HELP = {
    "env": "Environment from the inventory to act on (for example prod).",
    "inventory": "Inventory file (default: smship.yml, or $SMSHIP_INVENTORY).",
    "output": "'text' for people (default) or 'json': one JSON document on stdout, progress on stderr.",
}


def env_command(help: dict[str, str] | None = None, title: str | None = None, **task_options) -> Callable:
    """Declare ``body(ctx: EnvContext, ...) -> bool | None`` as an smship command.

    ``title`` names the command in its closing line (default: the function's
    name), for commands of a group such as ``storage setup``.
    """

    def decorate(body: Callable) -> Callable:
        name = title or body.__name__.replace("_", "-")

        @functools.wraps(body)
        def command(c, env, *args, inventory=None, output=None, **kwargs):
            try:
                ctx = EnvContext.open(env, Path(inventory) if inventory else None, output)
            except (InventoryError, SmshipError) as exc:
                raise Exit(str(exc) if isinstance(exc, InventoryError) else f"error: {exc}", code=2) from None
            try:
                ok = body(ctx, *args, **kwargs)
            except (SmshipError, InventoryError) as exc:
                ctx.reporter.error(str(exc))
                ok = False
            except KeyboardInterrupt:
                ctx.reporter.error("interrupted")
                ok = False
            if not ctx.reporter.finish(f"{name} {env}", None if ok is None else bool(ok)):
                raise Exit(code=1)

        own = list(inspect.signature(body).parameters.values())[1:]
        # Before the command's own options: invoke gives short flags in this order, and -i / -o
        # mean --inventory / --output on every command, whatever options a command adds.
        common = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)
                  for n in ("inventory", "output")]
        positional = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in ("c", "env")]
        command.__signature__ = inspect.Signature(positional + common + own)
        del command.__wrapped__  # invoke must read the signature above, not body's
        return task(command, help={**COMMON_HELP, **(help or {})}, **task_options)

    return decorate

