from refapp_testlib import RedisServer


def test_health_reports_cached_migration_state(make_settings, client_for):
    with client_for(make_settings()) as client:
        body = client.get("/health").json()
        assert body["status"] == "healthy"
        assert body["migration"]["ok"] is True
        assert body["migration"]["current"] == body["migration"]["head"] == "0002_uploads_beat_ticks"
        assert client.get("/health/live").json() == {"status": "alive"}


def test_ready_is_healthy_when_everything_is_up(make_settings, client_for):
    with client_for(make_settings()) as client:
        resp = client.get("/health/ready")
        assert resp.status_code == 200
        body = resp.json()
        assert body["status"] == "healthy", body
        assert {name: c["status"] for name, c in body["checks"].items()} == {
            "database": "healthy",
            "redis": "healthy",
            "file_storage": "healthy",
        }


def test_ready_goes_unhealthy_when_redis_stops(make_settings, client_for):
    own = RedisServer()
    own.start()
    try:
        with client_for(make_settings(SM_REDIS_URL=own.url)) as client:
            assert client.get("/health/ready").json()["status"] == "healthy"
            own.stop()
            resp = client.get("/health/ready")
            assert resp.status_code == 200
            body = resp.json()
            assert body["status"] == "unhealthy", body
            assert body["checks"]["redis"]["status"] == "unhealthy"
            assert body["checks"]["database"]["status"] == "healthy"
    finally:
        own.stop()


def test_ready_unhealthy_with_redis_on_a_dead_port(make_settings, client_for):
    from refapp_testlib import free_port

    with client_for(make_settings(SM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")) as client:
        body = client.get("/health/ready").json()
        assert body["status"] == "unhealthy"
        assert body["checks"]["redis"]["status"] == "unhealthy"
        assert "error" in body["checks"]["redis"]


def test_ready_goes_unhealthy_when_postgres_stops(postgres, make_settings, client_for):
    with client_for(make_settings()) as client:
        assert client.get("/health/ready").json()["status"] == "healthy"
        postgres.stop()
        try:
            resp = client.get("/health/ready")
            assert resp.status_code == 200
            body = resp.json()
            assert body["status"] == "unhealthy", body
            assert body["checks"]["database"]["status"] == "unhealthy"
            assert body["checks"]["redis"]["status"] == "healthy"
            # /health does not check dependencies and /health/live only needs the process.
            assert client.get("/health").json()["status"] == "healthy"
            assert client.get("/health/live").status_code == 200
        finally:
            postgres.start()
        assert client.get("/health/ready").json()["status"] == "healthy"


def test_ready_degraded_when_storage_is_not_writable(make_settings, client_for, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the storage root should be")
    with client_for(make_settings(SM_FILE_STORAGE_PATH=str(blocker / "uploads"))) as client:
        body = client.get("/health/ready").json()
        assert body["status"] == "degraded", body
        assert body["checks"]["file_storage"]["status"] == "degraded"
        assert body["checks"]["database"]["status"] == "healthy"


def test_ready_worst_status_wins(make_settings, client_for, tmp_path):
    from refapp_testlib import free_port

    blocker = tmp_path / "file"
    blocker.write_text("x")
    settings = make_settings(SM_FILE_STORAGE_PATH=str(blocker / "u"), SM_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    with client_for(settings) as client:
        body = client.get("/health/ready").json()
        assert body["checks"]["file_storage"]["status"] == "degraded"
        assert body["status"] == "unhealthy"


def test_ready_checks_run_concurrently(make_settings, client_for, monkeypatch):
    import asyncio
    import time

    from redis.asyncio import Redis

    from refapp import storage

    def slow_check(self):
        time.sleep(0.7)

    async def slow_ping(self, **kwargs):
        await asyncio.sleep(0.7)
        return True

    monkeypatch.setattr(storage.FilesystemStorage, "check", slow_check)
    monkeypatch.setattr(Redis, "ping", slow_ping)
    with client_for(make_settings(SM_HEALTH_TIMEOUT="3")) as client:
        started = time.monotonic()
        body = client.get("/health/ready").json()
        elapsed = time.monotonic() - started
    assert body["status"] == "healthy", body
    # Two 0.7 s checks one after the other would take at least 1.4 s.
    assert elapsed < 1.3, elapsed


def test_ready_check_timeout_is_short(make_settings, client_for, monkeypatch):
    import time

    from refapp import storage

    monkeypatch.setattr(storage.FilesystemStorage, "check", lambda self: time.sleep(1.5))
    with client_for(make_settings(SM_HEALTH_TIMEOUT="0.3")) as client:
        started = time.monotonic()
        body = client.get("/health/ready").json()
        elapsed = time.monotonic() - started
    assert body["status"] == "degraded"
    assert "timed out" in body["checks"]["file_storage"]["error"]
    assert body["checks"]["database"]["status"] == "healthy"
    assert elapsed < 1.2, elapsed
