"""Host-side commands for installing a release: pure builders, no host needed.

On a host::

    {app_path}/releases/<release id>/            the release tree
    {app_path}/releases/<release id>/.venv   ->  {app_path}/shared/venvs/<deps_id>
    {app_path}/shared/wheels/<deps_id>/          requirements.txt + wheels (shipped once)
    {app_path}/shared/venvs/<deps_id>/           built once per deps_id, shared by releases

Virtualenvs are not relocatable (scripts hold absolute paths), so a venv is
built in place.  It counts as present only when its ``.smship-complete``
marker exists; the marker is written last, after every package installed
and imported cleanly.  A directory without the marker (an interrupted
build) is removed and built again.  A ``flock`` on a sibling lock file
keeps two deploys from building the same venv at once.

The venv is built by root (``shared/venvs`` is root's, like ``releases/``,
so the app cannot change its own code); the app user then runs
``pip check`` with it, which proves it can read every installed package.
"""

from __future__ import annotations

import re

from smship.command import Command, script
from smship.errors import SmshipError
from smship.release.ids import check_release_id

COMPLETE_MARKER = ".smship-complete"
DEPS_ID = re.compile(r"[0-9a-f]{16}")

VENV_SCRIPT = """\
set -eu
venv=$1 wheels=$2 python=$3 marker=$4 user=$5
[ -f "$venv/$marker" ] && exit 0
umask 022
exec 9>"$venv.lock"
flock 9
[ -f "$venv/$marker" ] && exit 0
[ -f "$wheels/requirements.txt" ] || { echo "smship: wheelhouse $wheels has no requirements.txt" >&2; exit 1; }
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \\
    --find-links "$wheels" -r "$wheels/requirements.txt"
if [ "$(id -un)" = "$user" ]; then
    "$venv/bin/python" -m pip check >&2
else
    runuser -u "$user" -- "$venv/bin/python" -m pip check >&2
fi
touch "$venv/$marker"
"""


def check_deps_id(deps_id: str) -> str:
    if not DEPS_ID.fullmatch(deps_id or ""):
        raise SmshipError(f"{deps_id!r} is not a dependency set id (16 hex digits)")
    return deps_id


def release_dir(app_path: str, release_id: str) -> str:
    return f"{app_path.rstrip('/')}/releases/{check_release_id(release_id)}"


def wheels_dir(app_path: str, deps_id: str) -> str:
    return f"{app_path.rstrip('/')}/shared/wheels/{check_deps_id(deps_id)}"


def venv_dir(app_path: str, deps_id: str) -> str:
    return f"{app_path.rstrip('/')}/shared/venvs/{check_deps_id(deps_id)}"


def venv_commands(app_path: str, deps_id: str, python: str, app_user: str) -> list[Command]:
    """Build the venv for ``deps_id`` from its shipped wheelhouse, unless it is already complete."""
    venv = venv_dir(app_path, deps_id)
    wheels = wheels_dir(app_path, deps_id)
    return [
        script(VENV_SCRIPT, sudo=True, args=(venv, wheels, python, COMPLETE_MARKER, app_user),
               description=f"virtualenv {deps_id} (built from the wheelhouse unless present)"),
    ]

