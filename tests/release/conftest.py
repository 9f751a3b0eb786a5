"""Fixtures for release tests (the demo app itself is described in releasekit.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from releasekit import LOG_NAME, DemoRepo, make_demo_repo, make_uv_wheel
from smship.release import proc
from smship.release.wheelhouse import UV_VERSION


@pytest.fixture
def demo(tmp_path: Path) -> DemoRepo:
    return make_demo_repo(tmp_path / "repo")


@pytest.fixture
def fixture_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    log = home / LOG_NAME
    log.touch()
    monkeypatch.setenv("HOME", str(home))
    return log


@pytest.fixture
def installer_in_cache(tmp_path: Path) -> None:
    """uv's wheel already in the test's build cache (``tmp_path/cache``), as after a first build on this machine."""
    make_uv_wheel(tmp_path / "cache" / "installers" / f"uv-{UV_VERSION}-x86_64")


@pytest.fixture
def cache(tmp_path: Path, installer_in_cache) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every program the build runs through smship.release.proc, recorded."""
    seen: list[list[str]] = []
    real = proc.run

    def spy(argv, **kwargs):
        seen.append([str(a) for a in argv])
        return real(argv, **kwargs)

    monkeypatch.setattr(proc, "run", spy)
    return seen

