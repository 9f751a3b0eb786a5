"""Host-side builders: exact argv, then the venv script run for real with a local sh."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smship.errors import SmshipError
from smship.release import venv_commands, venv_dir, wheels_dir
from smship.release.hostcmds import COMPLETE_MARKER, VENV_SCRIPT, tools_dir
from smship.release.wheelhouse import UV_VERSION

from releasekit import make_uv_wheel, make_wheel

DEPS = "0123456789abcdef"


def test_paths():
    assert venv_dir("/srv/shop", DEPS) == f"/srv/shop/shared/venvs/{DEPS}"
    assert wheels_dir("/srv/shop", DEPS) == f"/srv/shop/shared/wheels/{DEPS}"


@pytest.mark.parametrize("bad", ["../x", "0123", "0123456789ABCDEF", "0123456789abcdef/.."])
def test_bad_deps_ids_never_become_paths(bad):
    with pytest.raises(SmshipError):
        venv_commands("/srv/shop", bad, "/usr/bin/python3", "shop")


def test_venv_commands_argv():
    [command] = venv_commands("/srv/shop", DEPS, "/usr/bin/python3", "shop")
    assert command.argv == ("sh", "-c", VENV_SCRIPT, "smship", f"/srv/shop/shared/venvs/{DEPS}",
                            f"/srv/shop/shared/wheels/{DEPS}", "/usr/bin/python3", COMPLETE_MARKER, "shop",
                            "/srv/shop/shared/tools")
    assert command.sudo is True and command.user is None
    assert "--no-index" in VENV_SCRIPT and '--find-links "$wheels"' in VENV_SCRIPT
    assert '-r "$wheels/requirements.txt"' in VENV_SCRIPT
    install = next(line for line in VENV_SCRIPT.splitlines() if '"$uv" pip install' in line)
    assert install.startswith("env -i PATH=") and "--offline" in install and "--no-config" in install
    assert "--compile-bytecode" in VENV_SCRIPT and " pip " not in VENV_SCRIPT.replace('"$uv" pip ', "")


def run_local(command) -> subprocess.CompletedProcess:
    return subprocess.run(command.argv, capture_output=True, text=True, timeout=300)


@pytest.fixture
def app_root(tmp_path: Path) -> Path:
    root = tmp_path / "srv" / "shop"
    wheels = Path(wheels_dir(str(root), DEPS))
    make_wheel(wheels, "tinydep", "1.0")
    make_uv_wheel(wheels)
    (wheels / "requirements.txt").write_text(f"# smship wheelhouse\n# installer: uv=={UV_VERSION}\ntinydep==1.0\n")
    (root / "shared" / "venvs").mkdir(parents=True)
    return root


def test_venv_script_builds_once_and_rebuilds_a_partial_venv(app_root):
    [command] = venv_commands(str(app_root), DEPS, sys.executable, getpass.getuser())
    venv = Path(venv_dir(str(app_root), DEPS))

    # An interrupted earlier build: directory present, marker absent.
    (venv / "bin").mkdir(parents=True)
    (venv / "half-built").write_text("")
    done = run_local(command)
    assert done.returncode == 0, done.stderr
    assert (venv / COMPLETE_MARKER).is_file()
    assert not (venv / "half-built").exists()
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import tinydep; print(tinydep.VALUE)"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "1.0"
    # uv built it (unpacked from the wheelhouse's wheel), byte-compiled, without pip in the venv.
    assert os.access(Path(tools_dir(str(app_root))) / f"uv-{UV_VERSION}" / "uv", os.X_OK)
    assert "uv = " in (venv / "pyvenv.cfg").read_text()
    assert list(venv.glob("lib/python*/site-packages/tinydep/__pycache__/__init__.*.pyc"))
    assert not list(venv.glob("lib/python*/site-packages/pip"))

    # Complete: a second run must leave it alone (even with the wheelhouse gone).
    (venv / "sentinel").write_text("")
    os.remove(Path(wheels_dir(str(app_root), DEPS)) / "requirements.txt")
    done = run_local(command)
    assert done.returncode == 0, done.stderr
    assert (venv / "sentinel").exists()


def test_venv_script_fails_without_marker_when_a_wheel_is_missing(app_root):
    (Path(wheels_dir(str(app_root), DEPS)) / "requirements.txt").write_text("tinydep==1.0\nabsent==2.0\n")
    [command] = venv_commands(str(app_root), DEPS, sys.executable, getpass.getuser())
    done = run_local(command)
    assert done.returncode != 0
    assert not (Path(venv_dir(str(app_root), DEPS)) / COMPLETE_MARKER).exists()


def test_venv_script_says_when_the_wheelhouse_names_no_installer(app_root):
    (Path(wheels_dir(str(app_root), DEPS)) / "requirements.txt").write_text("# smship wheelhouse\ntinydep==1.0\n")
    [command] = venv_commands(str(app_root), DEPS, sys.executable, getpass.getuser())
    done = run_local(command)
    assert done.returncode != 0 and "names no installer" in done.stderr and "build the release again" in done.stderr
    assert not (Path(venv_dir(str(app_root), DEPS)) / COMPLETE_MARKER).exists()


def test_uv_sees_none_of_the_callers_environment(app_root, monkeypatch):
    """A stand-in uv that records its environment: the caller's variables (secrets) never reach it."""
    wheels = Path(wheels_dir(str(app_root), DEPS))
    for wheel in wheels.glob("uv-*.whl"):
        wheel.unlink()
    import zipfile
    with zipfile.ZipFile(wheels / f"uv-{UV_VERSION}-py3-none-any.whl", "w") as archive:
        archive.writestr(f"uv-{UV_VERSION}.data/scripts/uv", '#!/bin/sh\nenv >> "$(dirname "$0")/env-seen"\nexit 3\n')
    monkeypatch.setenv("SM_SECRET_KEY", "never-in-uv")
    [command] = venv_commands(str(app_root), DEPS, sys.executable, getpass.getuser())
    done = run_local(command)
    assert done.returncode == 3
    seen = (Path(tools_dir(str(app_root))) / f"uv-{UV_VERSION}" / "env-seen").read_text()
    assert "PATH=/usr/sbin:/usr/bin:/sbin:/bin" in seen.splitlines()
    assert "never-in-uv" not in seen and "SM_SECRET_KEY" not in seen
    assert not (Path(venv_dir(str(app_root), DEPS)) / COMPLETE_MARKER).exists()
