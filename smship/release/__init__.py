"""Releases: built on the machine running smship, verified, archived, installed on hosts.

* :func:`build_release`   source at a commit (or the working tree) + built
  front end + offline wheelhouse + ``release.json`` manifest;
* :func:`archive_release` / :func:`load_release`   build once in CI, deploy many;
* :func:`venv_commands`, :func:`venv_dir`
  the host side, as :class:`~smship.command.Command` values.
"""

from smship.release.alembic_heads import alembic_heads
from smship.release.archive import archive_release, load_release
from smship.release.build import build_release
from smship.release.cachedir import cache_dir
from smship.release.hostcmds import venv_commands, venv_dir, wheels_dir
from smship.release.ids import check_release_id, make_release_id
from smship.release.model import Release
from smship.release.wheelhouse import BOOKWORM, TRIXIE, Target, target_for_version

__all__ = [
    "BOOKWORM",
    "Release",
    "TRIXIE",
    "Target",
    "alembic_heads",
    "archive_release",
    "build_release",
    "cache_dir",
    "check_release_id",
    "load_release",
    "make_release_id",
    "target_for_version",
    "venv_commands",
    "venv_dir",
    "wheels_dir",
]
