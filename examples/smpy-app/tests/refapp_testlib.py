"""Helpers for the reference app's tests: real Postgres, Redis and app processes on 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

APP_ROOT = Path(__file__).resolve().parent.parent

PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14", "13")]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    """Poll predicate until it returns a truthy value; bounded by timeout."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling, report the last error on timeout
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "postgres").exists():
            return candidate
    found = shutil.which("postgres")
    if found:
        return Path(found).parent
    pytest.fail("postgres binaries not found (apt-get install postgresql)")


class Postgres:
    """A throwaway cluster; as root it runs as the postgres system user."""

    def __init__(self):
        self.bin = _pg_bin()
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="refapp-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self.proc: subprocess.Popen | None = None
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            os.chmod(self.base, 0o700)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [*self.prefix, str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        logfile = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [*self.prefix, str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port), "-h", HOST,
             "-k", str(self.base), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=logfile,
            stderr=subprocess.STDOUT,
        )
        logfile.close()
        wait_until(lambda: self.proc.poll() is None and self._accepts(), 60, what="postgres to accept connections")

    def _accepts(self) -> bool:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
            return True

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # runuser does not pass signals on, so ask pg_ctl for a fast shutdown.
        subprocess.run(
            [*self.prefix, str(self.bin / "pg_ctl"), "-D", str(self.data), "stop", "-m", "fast", "-w", "-t", "30"],
            capture_output=True,
            timeout=60,
        )
        stop_process(self.proc, timeout=15)
        wait_until(lambda: not port_open(self.port), 15, what="postgres port to close")

    def dsn(self, dbname: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{dbname}"

    def async_url(self, dbname: str) -> str:
        return f"postgresql+asyncpg://postgres@{HOST}:{self.port}/{dbname}"

    def create_database(self) -> str:
        import psycopg

        name = "refapp_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class RedisServer:
    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.exe = shutil.which("redis-server")
        if not self.exe:
            pytest.fail("redis-server not found (apt-get install redis-server)")

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: self.proc.poll() is None and port_open(self.port), 30, what="redis to listen")

    def stop(self) -> None:
        stop_process(self.proc)
        wait_until(lambda: not port_open(self.port), 15, what="redis port to close")


def run_alembic(database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SM_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=APP_ROOT / "host",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def migrate(database_url: str) -> None:
    result = run_alembic(database_url, "upgrade", "head")
    assert result.returncode == 0, result.stderr


def app_env(redis_server, database_url: str, **extra: str) -> dict[str, str]:
    """Environment for app subprocesses (uvicorn, celery, the admin CLI)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    env.update(
        {
            "SM_ENVIRONMENT": "testing",
            "SM_SECRET_KEY": "test-secret-key",
            "SM_DATABASE_URL": database_url,
            "SM_REDIS_URL": redis_server.url,
            "SM_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Uvicorn:
    """`uvicorn main:app --proxy-headers` as a subprocess from the workspace root."""

    def __init__(self, env: dict[str, str], tmp_path: Path):
        self.port = free_port()
        self.log_path = tmp_path / f"uvicorn-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "main:app", "--proxy-headers", "--host", HOST, "--port", str(self.port)],
            cwd=APP_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30) -> None:
        import httpx

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"uvicorn exited with {self.proc.returncode}:\n{self.output()}")
            return httpx.get(self.base_url + "/health/live", timeout=2).status_code == 200

        wait_until(ready, timeout, what="uvicorn to serve /health/live")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()
