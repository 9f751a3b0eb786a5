import socket
import sys
import threading
import time

import psycopg
import pytest

from refapp_testlib import app_env, wait_until

CELERY = [sys.executable, "-m", "celery", "-A", "scripts.run_worker:celery"]


def _worker(spawn, env, name="worker"):
    proc, log = spawn([*CELERY, "worker", "--pool", "solo", "--concurrency", "1", "-l", "info"], env, name)
    wait_until(lambda: proc.poll() is None and "ready" in log.read_text(errors="replace"), 60, what="celery worker ready")
    return proc, log


def test_celery_round_trip_with_a_real_worker(spawn, redis_server, migrated_db, make_settings, client_for):
    env = app_env(redis_server, migrated_db, SM_MODULES_ENABLED="background_tasks")
    proc, log = _worker(spawn, env)
    with client_for(make_settings()) as client:
        resp = client.post("/tasks/add", json={"x": 19, "y": 23}, headers={"X-Correlation-ID": "task-cid-123"})
        assert resp.status_code == 202
        task_id = resp.json()["task_id"]

        def done():
            body = client.get(f"/tasks/{task_id}").json()
            assert body["state"] not in ("FAILURE", "REVOKED"), body
            return body if body["state"] == "SUCCESS" else None

        body = wait_until(done, 60, interval=0.3, what="the add task to finish")
        assert body["result"] == 42
    assert proc.poll() is None
    # The worker logs JSON and carries the web request's correlation id into the task.
    assert '"correlation_id": "task-cid-123"' in log.read_text()


def _registered_tasks(log_text: str) -> set[str]:
    """Task names from the worker banner's [tasks] section."""
    lines = log_text.split("[tasks]", 1)[1].splitlines()
    names = set()
    for line in lines[1:]:
        if not line.strip().startswith(". "):
            break
        names.add(line.strip()[2:].strip())
    return names


def test_worker_registers_only_enabled_modules(spawn, redis_server, migrated_db):
    _, on_log = _worker(spawn, app_env(redis_server, migrated_db, SM_MODULES_ENABLED="background_tasks"))
    assert {"refapp.add", "refapp.record_beat_tick", "refapp.hold"} <= _registered_tasks(on_log.read_text())
    _, off_log = _worker(spawn, app_env(redis_server, migrated_db, SM_MODULES_ENABLED="file_storage"), "worker-off")
    assert not {n for n in _registered_tasks(off_log.read_text()) if n.startswith("refapp.")}


def _tick_count(pg_dsn: str) -> int:
    with psycopg.connect(pg_dsn, connect_timeout=5) as conn:
        return conn.execute("SELECT count(*) FROM beat_ticks").fetchone()[0]


def test_beat_records_ticks(spawn, postgres, redis_server, tmp_path):
    from refapp_testlib import migrate

    dbname = postgres.create_database()
    migrate(postgres.async_url(dbname))
    schedule = tmp_path / "beat" / "schedule-db"
    schedule.parent.mkdir()
    env = app_env(
        redis_server,
        postgres.async_url(dbname),
        SM_BEAT_INTERVAL="1",
        SM_BEAT_SCHEDULE_FILE=str(schedule),
        SM_RELEASE_ID="rel-beat",
    )
    _worker(spawn, env)
    beat, beat_log = spawn([*CELERY, "beat", "-l", "info"], env, "beat")
    dsn = postgres.dsn(dbname)
    wait_until(lambda: _tick_count(dsn) >= 2, 60, interval=0.5, what="two beat ticks in beat_ticks")
    assert beat.poll() is None, beat_log.read_text()
    assert list(schedule.parent.iterdir()), "beat did not use SM_BEAT_SCHEDULE_FILE"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT DISTINCT release FROM beat_ticks").fetchall() == [("rel-beat",)]


def test_the_hold_task_runs_until_its_go_file_appears_and_names_its_host(tmp_path, monkeypatch):
    from refapp.background_tasks import hold

    monkeypatch.setenv("SM_FILE_STORAGE_PATH", str(tmp_path))
    answer: list[str] = []
    runner = threading.Thread(target=lambda: answer.append(hold("held-1", 30)))
    runner.start()
    wait_until(lambda: (tmp_path / "held-1.running").exists(), 10, interval=0.05, what="the task to run")
    assert (tmp_path / "held-1.running").read_text() == socket.gethostname() + "\n"
    time.sleep(0.3)
    assert runner.is_alive() and not answer, "it ended before its go file appeared"
    (tmp_path / "held-1.go").touch()
    runner.join(10)
    assert answer == [socket.gethostname()]
    assert not list(tmp_path.iterdir()), "it left its files behind"


def test_the_hold_task_gives_up_at_its_limit_and_refuses_a_name_that_is_not_plain(tmp_path, monkeypatch):
    from refapp.background_tasks import hold

    monkeypatch.setenv("SM_FILE_STORAGE_PATH", str(tmp_path))
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="held-2.go did not appear within 0.3s"):
        hold("held-2", 0.3)
    assert time.monotonic() - began < 5 and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="name"):
        hold("../escape", 1)
    assert not list(tmp_path.parent.glob("escape*"))
