import json
import logging

import httpx
import psycopg

from refapp_testlib import app_env, migrate, run_alembic, wait_until


def test_sm010_refuses_unmigrated_db_in_production_then_starts_after_upgrade(postgres, redis_server, start_uvicorn, tmp_path):
    url = postgres.async_url(postgres.create_database())
    env = app_env(redis_server, url, SM_ENVIRONMENT="production", SM_FILE_STORAGE_PATH=str(tmp_path / "up"))

    refused = start_uvicorn(env)
    refused.proc.wait(60)
    out = refused.output()
    assert refused.proc.returncode != 0, out
    sm010 = [line for line in out.splitlines() if "SM010" in line]
    assert sm010, out
    assert "current=None" in sm010[0] and "head=0002_uploads_beat_ticks" in sm010[0]

    # Half-way is not at head either.
    assert run_alembic(url, "upgrade", "0001_users").returncode == 0
    partial = start_uvicorn(env)
    partial.proc.wait(60)
    assert partial.proc.returncode != 0
    assert "current=0001_users" in partial.output()

    migrate(url)
    server = start_uvicorn(env)
    server.wait_ready()
    health = httpx.get(server.base_url + "/health", timeout=5).json()
    assert health["migration"] == {"current": "0002_uploads_beat_ticks", "head": "0002_uploads_beat_ticks", "ok": True,
                                   "error": None, "ahead": False}
    assert "SM010" not in server.output()


def test_a_rolled_back_release_starts_on_a_newer_schema(postgres, redis_server, start_uvicorn, tmp_path):
    name = postgres.create_database()
    url = postgres.async_url(name)
    migrate(url)
    # A newer release migrated further: a revision this code has never seen.
    with psycopg.connect(postgres.dsn(name), autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0003_from_the_future'")
    env = app_env(redis_server, url, SM_ENVIRONMENT="production", SM_FILE_STORAGE_PATH=str(tmp_path / "up"))
    server = start_uvicorn(env)
    server.wait_ready()
    health = httpx.get(server.base_url + "/health", timeout=5).json()
    assert health["migration"]["ok"] is True and health["migration"]["ahead"] is True
    assert "SM010" not in server.output() and "newer than this release's head" in server.output()


def test_sm010_only_warns_in_development(postgres, make_settings, client_for, caplog):
    url = postgres.async_url(postgres.create_database())
    for environment in ("development", "testing"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="refapp"):
            with client_for(make_settings(SM_ENVIRONMENT=environment, SM_DATABASE_URL=url)) as client:
                body = client.get("/health").json()
        assert body["migration"]["ok"] is False and body["migration"]["current"] is None
        assert any("SM010" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_version_and_release_header_from_env(make_settings, client_for):
    with client_for(make_settings(SM_RELEASE_ID="20240101-abc")) as client:
        resp = client.get("/version")
        assert resp.json() == {"release": "20240101-abc"}
        assert resp.headers["x-release"] == "20240101-abc"
        for path in ("/health/live", "/static/robots.txt", "/does-not-exist", "/me"):
            assert client.get(path).headers["x-release"] == "20240101-abc", path


def test_release_id_file_then_dev_fallback(tmp_path):
    from refapp.settings import Settings

    assert Settings.from_env({}, root=tmp_path).release_id == "dev"
    (tmp_path / "RELEASE_ID").write_text("from-file-7\n")
    assert Settings.from_env({}, root=tmp_path).release_id == "from-file-7"
    assert Settings.from_env({"SM_RELEASE_ID": "from-env"}, root=tmp_path).release_id == "from-env"


def test_settings_defaults_and_pool():
    from refapp.db import make_async_engine
    from refapp.settings import Settings

    settings = Settings.from_env({})
    assert settings.environment == "development" and not settings.is_production
    assert Settings.from_env({"SM_ENVIRONMENT": "testing"}).is_production is False
    assert Settings.from_env({"SM_ENVIRONMENT": "staging"}).is_production is True
    assert (settings.db_pool_size, settings.db_max_overflow, settings.beat_interval) == (10, 20, 10.0)
    assert settings.file_storage_backend == "filesystem"
    tuned = Settings.from_env({"SM_DB_POOL_SIZE": "5", "SM_DB_MAX_OVERFLOW": "7", "SM_DATABASE_URL": "postgresql+asyncpg://u@h/d"})
    engine = make_async_engine(tuned)
    assert engine.pool.size() == 5 and engine.pool._max_overflow == 7
    assert tuned.sync_database_url == "postgresql+psycopg://u@h/d"


def test_json_logs_carry_correlation_ids(migrated_db, redis_server, start_uvicorn, tmp_path):
    env = app_env(redis_server, migrated_db, SM_ENVIRONMENT="production", SM_LOG_FORMAT="json",
                  SM_FILE_STORAGE_PATH=str(tmp_path / "up"), SM_RELEASE_ID="rel-json")
    server = start_uvicorn(env)
    server.wait_ready()
    given = httpx.get(server.base_url + "/version", headers={"X-Correlation-ID": "abc-123"}, timeout=5)
    assert given.headers["x-correlation-id"] == "abc-123"
    assert given.headers["x-release"] == "rel-json"
    fresh = httpx.get(server.base_url + "/health", timeout=5)
    generated = fresh.headers["x-correlation-id"]
    assert generated and generated != "abc-123"

    def logged():
        text = server.output()
        return "abc-123" in text and generated in text

    wait_until(logged, 10, what="request lines in the log")
    server.stop()
    records = []
    for line in server.output().splitlines():
        if line.strip():
            records.append(json.loads(line))  # every line is one JSON object
    assert all("correlation_id" in r for r in records)
    request_lines = [r for r in records if r["logger"] in ("refapp.request", "uvicorn.access")]
    assert request_lines
    assert all(r["correlation_id"] for r in request_lines)
    version_lines = [r for r in request_lines if "/version" in r["message"]]
    assert {r["correlation_id"] for r in version_lines} == {"abc-123"}
    assert {r["logger"] for r in version_lines} == {"refapp.request", "uvicorn.access"}
