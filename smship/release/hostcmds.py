"""Host-side commands for installing a release: pure builders, no host needed.

On a host::

    {app_path}/releases/<release id>/            the release tree
    {app_path}/releases/<release id>/.venv   ->  {app_path}/shared/venvs/<deps_id>
    {app_path}/shared/wheels/<deps_id>/          requirements.txt + wheels (shipped once)
    {app_path}/shared/venvs/<deps_id>/           built once per deps_id, shared by releases
    {app_path}/shared/tools/uv-<version>/uv      the installer, unpacked from its shipped wheel

Virtualenvs are not relocatable (scripts hold absolute paths), so a venv is
built in place.  It counts as present only when its ``.smship-complete``
marker exists; the marker is written last, after every package installed
and imported cleanly.  A directory without the marker (an interrupted
build) is removed and built again.  A ``flock`` on a sibling lock file
keeps two deploys from building the same venv at once.

The venv is built by root (``shared/venvs`` is root's, like ``releases/``,
so the app cannot change its own code) with uv from the wheelhouse, offline,
byte-compiled at install (processes then start without writing ``.pyc``
files they could not write anyway); the app user then runs ``uv pip check``
on it, which proves it can read every installed package's metadata.
"""

from __future__ import annotations

import re

from smship.command import Command, script
from smship.errors import SmshipError
# The agent judges a release whole by this marker: one definition, the shipped agent's.
from smship.remote.agent import COMPLETE_MARKER

INSTALLER_LINE = "# installer: uv=="   # requirements.txt's second line (smship.release.wheelhouse)
# uv's binary from its wheel; zipfile keeps no modes, the script sets them.
UNPACK_UV = """
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    [name] = [n for n in wheel.namelist() if n.endswith(".data/scripts/uv")]
    with wheel.open(name) as source, open(sys.argv[2], "wb") as unpacked:
        unpacked.write(source.read())
"""
DEPS_ID = re.compile(r"[0-9a-f]{16}")

# uv runs with this environment only: root's session on a host may hold
# anything, and an installer needs none of it (no index, no cache, no config).
UV_ENV = "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent LANG=C.UTF-8"
UV_FLAGS = "--no-config --no-cache --offline"

VENV_SCRIPT = f"""\
set -eu
venv=$1 wheels=$2 python=$3 marker=$4 user=$5 tools=$6
[ -f "$venv/$marker" ] && exit 0
umask 022
exec 9>"$venv.lock"
flock 9
[ -f "$venv/$marker" ] && exit 0
[ -f "$wheels/requirements.txt" ] || {{ echo "smship: wheelhouse $wheels has no requirements.txt" >&2; exit 1; }}
version=$(sed -n 's/^{INSTALLER_LINE}//p' "$wheels/requirements.txt")
[ -n "$version" ] || {{ echo "smship: wheelhouse $wheels names no installer (built by an older smship): build the release again" >&2; exit 1; }}
uv="$tools/uv-$version/uv"
if [ ! -x "$uv" ]; then
    set -- "$wheels/uv-$version-"*.whl
    [ -f "$1" ] || {{ echo "smship: wheelhouse $wheels has no wheel of uv $version" >&2; exit 1; }}
    mkdir -p "$tools"
    unpack=$(mktemp -d "$tools/.uv-$version.XXXXXX")
    "$python" -c '{UNPACK_UV}' "$1" "$unpack/uv"
    chmod 755 "$unpack" "$unpack/uv"
    mv -T "$unpack" "$tools/uv-$version" 2>/dev/null || rm -rf "$unpack"
fi
rm -rf "$venv"
{UV_ENV} "$uv" venv {UV_FLAGS} --quiet --python "$python" "$venv"
{UV_ENV} "$uv" pip install {UV_FLAGS} --quiet --python "$venv/bin/python" --no-index --find-links "$wheels" \\
    --compile-bytecode --link-mode copy -r "$wheels/requirements.txt"
if [ "$(id -un)" = "$user" ]; then
    {UV_ENV} "$uv" pip check {UV_FLAGS} --python "$venv/bin/python" >&2
else
    runuser -u "$user" -- {UV_ENV} "$uv" pip check {UV_FLAGS} --python "$venv/bin/python" >&2
fi
touch "$venv/$marker"
"""


def check_deps_id(deps_id: str) -> str:
    if not DEPS_ID.fullmatch(deps_id or ""):
        raise SmshipError(f"{deps_id!r} is not a dependency set id (16 hex digits)")
    return deps_id


def wheels_dir(app_path: str, deps_id: str) -> str:
    return f"{app_path.rstrip('/')}/shared/wheels/{check_deps_id(deps_id)}"


def venv_dir(app_path: str, deps_id: str) -> str:
    return f"{app_path.rstrip('/')}/shared/venvs/{check_deps_id(deps_id)}"


def tools_dir(app_path: str) -> str:
    return f"{app_path.rstrip('/')}/shared/tools"


def venv_commands(app_path: str, deps_id: str, python: str, app_user: str) -> list[Command]:
    """Build the venv for ``deps_id`` from its shipped wheelhouse, unless it is already complete."""
    venv = venv_dir(app_path, deps_id)
    wheels = wheels_dir(app_path, deps_id)
    return [
        script(VENV_SCRIPT, sudo=True, args=(venv, wheels, python, COMPLETE_MARKER, app_user, tools_dir(app_path)),
               description=f"virtualenv {deps_id} (built from the wheelhouse unless present)"),
    ]

