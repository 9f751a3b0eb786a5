"""Fixtures: a real Postgres and a real Redis on 127.0.0.1, started for the test session."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _path in (str(_TESTS.parent), str(_TESTS)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from refapp_testlib import APP_ROOT, Postgres, RedisServer, Uvicorn, migrate, stop_process  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient`")


@pytest.fixture(scope="session")
def postgres():
    pg = Postgres()
    try:
        pg.start()
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def migrated_db(postgres) -> str:
    """Async URL of a database at the migration head, shared by the session."""
    url = postgres.async_url(postgres.create_database())
    migrate(url)
    return url


@pytest.fixture(scope="session")
def frontend_build() -> Path:
    """Build the Vite front end once if static/dist is absent (needs node and npm)."""
    manifest = APP_ROOT / "static" / "dist" / ".vite" / "manifest.json"
    if not manifest.exists():
        npm = shutil.which("npm")
        if not npm:
            pytest.fail("npm is needed to build client_app (static/dist is absent)")
        client = APP_ROOT / "client_app"
        for args in (["ci", "--no-audit", "--no-fund"], ["run", "build"]):
            result = subprocess.run([npm, *args], cwd=client, capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stdout + result.stderr
    assert manifest.exists()
    return APP_ROOT / "static"


@pytest.fixture
def make_settings(redis_server, migrated_db, tmp_path):
    """Build Settings for an in-process app the way the environment would."""
    from refapp.settings import Settings

    def factory(**overrides: str) -> Settings:
        env = {
            "SM_ENVIRONMENT": "testing",
            "SM_SECRET_KEY": "test-secret-key",
            "SM_DATABASE_URL": migrated_db,
            "SM_REDIS_URL": redis_server.url,
            "SM_FILE_STORAGE_PATH": str(tmp_path / "uploads"),
            "SM_HEALTH_TIMEOUT": "2",
        }
        env.update(overrides)
        return Settings.from_env(env)

    return factory


@pytest.fixture
def client_for():
    """Context manager factory: a TestClient running the app's lifespan."""
    from contextlib import contextmanager

    from fastapi.testclient import TestClient

    from refapp.web import create_app

    @contextmanager
    def factory(settings):
        with TestClient(create_app(settings)) as client:
            yield client

    return factory


@pytest.fixture
def start_uvicorn(tmp_path):
    started: list[Uvicorn] = []

    def factory(env: dict[str, str]) -> Uvicorn:
        server = Uvicorn(env, tmp_path)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def spawn(tmp_path):
    """Start long-running helper processes (celery, moto) that are stopped after the test."""
    procs: list[subprocess.Popen] = []

    def factory(args: list[str], env: dict[str, str], name: str, cwd: Path = APP_ROOT) -> tuple[subprocess.Popen, Path]:
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc, log_path

    yield factory
    for proc in reversed(procs):
        stop_process(proc, timeout=20)
