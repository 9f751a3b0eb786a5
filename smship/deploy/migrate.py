"""Migrations: ``alembic upgrade head`` once, on one host, before any restart.

Run through ``systemd-run`` with the same user and EnvironmentFile as the
app's units, so the migration sees exactly the settings the app will, and
no secret ever appears on a command line.
"""

from __future__ import annotations

from smship.command import Command, cmd
from smship.layout import Layout


def in_app_environment(layout: Layout, workdir: str, *argv: str, description: str = "") -> Command:
    """``argv`` run as the app user with the app's env file, waiting for it to finish."""
    return cmd("systemd-run", "--quiet", "--wait", "--pipe", "--collect", "--service-type=exec",
               "-p", f"User={layout.user}", "-p", f"Group={layout.user}",
               "-p", f"EnvironmentFile={layout.env_file}", "-p", f"WorkingDirectory={workdir}",
               *argv, sudo=True, description=description or " ".join(argv))


def upgrade_command(layout: Layout, release_id: str) -> Command:
    release = layout.release(release_id)
    return in_app_environment(layout, f"{release}/host", f"{release}/.venv/bin/alembic", "upgrade", "head",
                              description=f"alembic upgrade head ({release_id})")


def current_revision_command(layout: Layout, release_id: str) -> Command:
    release = layout.release(release_id)
    return in_app_environment(layout, f"{release}/host", f"{release}/.venv/bin/alembic", "current",
                              description=f"alembic current ({release_id})")
