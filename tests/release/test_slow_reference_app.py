"""Build the reference app (examples/smpy-app) for real.

Its npm packages and wheels come from smship's build cache, which
scripts/setup-deps fills (the one step that downloads), so the test itself
makes no network request once set up.

The whole chain a deploy relies on is exercised: vite build, wheels for the
hosts' CPython 3.11, an archive round trip, then the host-side venv script
run locally, installing the wheelhouse with no index at all.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from smship.release import archive_release, build_release, cache_dir, load_release, target_for_version, venv_commands
from smship.release.alembic_heads import alembic_heads
from smship.release.hostcmds import COMPLETE_MARKER

REFAPP = Path(__file__).resolve().parents[2] / "examples" / "smpy-app"

pytestmark = pytest.mark.network


def committed_and_clean(app: Path) -> bool:
    tracked = subprocess.run(["git", "-C", str(app), "ls-files", "--", "."], capture_output=True, text=True)
    status = subprocess.run(["git", "-C", str(app), "status", "--porcelain", "--", "."],
                            capture_output=True, text=True)
    return bool(tracked.stdout.strip()) and not status.stdout.strip()


def test_build_the_reference_app(tmp_path):
    cache = cache_dir()
    dirty = not committed_and_clean(REFAPP)     # build what is there, committed or not
    messages: list[str] = []
    # Built for this machine's CPython, so the wheelhouse installs here below as it would on a host.
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    release = build_release(REFAPP, dirty=dirty, work_dir=tmp_path / "build", cache_dir=cache,
                            progress=messages.append, target=target_for_version(here))

    assert release.id.endswith("-dirty") == dirty
    assert (release.path / "main.py").is_file()
    assert (release.path / "static/dist/.vite/manifest.json").is_file()
    assert any(p.suffix == ".js" for p in (release.path / "static/dist/assets").iterdir())
    assert not (release.path / "client_app" / "node_modules").exists()
    assert release.alembic_heads and list(release.alembic_heads) == alembic_heads(REFAPP)

    wheels = {p.name.split("-")[0].lower() for p in release.wheels_path.glob("*.whl")}
    assert {"fastapi", "uvicorn", "celery", "alembic", "sqlalchemy", "asyncpg", "redis"} <= wheels
    for binary in release.wheels_path.glob("*.whl"):
        tags = binary.name[:-4].split("-")[-3:]
        assert tags[2] == "any" or ("x86_64" in tags[2] and "linux" in tags[2]), binary.name
        assert tags[1] in ("none", "abi3", f"cp{here.replace('.', '')}"), binary.name

    out = archive_release(release, tmp_path / "release.tar.zst")
    loaded = load_release(out, work_dir=tmp_path / "unpacked")
    assert loaded.manifest == release.manifest

    # The host side, locally: offline install from the shipped wheelhouse.
    app_root = tmp_path / "srv"
    shutil.copytree(loaded.wheels_path, app_root / "shared" / "wheels" / loaded.deps_id)
    (app_root / "shared" / "venvs").mkdir(parents=True)
    [command] = venv_commands(str(app_root), loaded.deps_id, sys.executable, getpass.getuser())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    done = subprocess.run(command.argv, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    venv = app_root / "shared" / "venvs" / loaded.deps_id
    assert (venv / COMPLETE_MARKER).is_file()
    imports = "import fastapi, uvicorn, celery, alembic, sqlalchemy, asyncpg, redis, boto3"
    check = subprocess.run([str(venv / "bin" / "python"), "-c", imports], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
