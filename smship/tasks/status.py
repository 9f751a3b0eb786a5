"""``smship status``."""

from __future__ import annotations

from smship.context import EnvContext
from smship.tasks.base import env_command


@env_command()
def status(ctx: EnvContext):
    """Show each host's live release, units (state and uptime), /health/ready status and free disk.

    With --output json the same facts come as one JSON document on stdout.
    """
    from smship.context import fleet_begun

    with fleet_begun(ctx) as (fleet, ahead):
        from smship.status.status import status as run

        return run(ctx, fleet, ahead)
