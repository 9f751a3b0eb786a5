"""Tasks of the background_tasks module."""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
import time

from celery import shared_task

from .celery_app import ADD_TASK, BEAT_TASK, HOLD_TASK
from .db import beat_ticks, make_sync_engine
from .settings import Settings

log = logging.getLogger("refapp.tasks")
_engine = None


def _sync_engine():
    global _engine
    if _engine is None:
        _engine = make_sync_engine(Settings.from_env())
    return _engine


@shared_task(name=ADD_TASK)
def add(x: int, y: int) -> int:
    log.info("adding %s + %s", x, y)
    return x + y


@shared_task(name=BEAT_TASK)
def record_beat_tick() -> int:
    settings = Settings.from_env()
    with _sync_engine().begin() as conn:
        row = conn.execute(
            beat_ticks.insert()
            .values(hostname=socket.gethostname(), release=settings.release_id, created_at=dt.datetime.now(dt.timezone.utc))
            .returning(beat_ticks.c.id)
        ).scalar_one()
    log.info("beat tick %s recorded", row)
    return row


_HOLD_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
HOLD_LIMIT = 600.0


@shared_task(name=HOLD_TASK)
def hold(name: str, limit: float = 120.0) -> str:
    """In flight until ``<name>.go`` exists in the file storage directory (at most ``limit`` seconds);
    the host it ran on.

    A task that stays running for as long as its caller wants: it writes ``<name>.running`` (holding
    the host's name) there once it runs, so a deployment rehearsal can restart the worker under it and
    see that the worker's shutdown let it finish. Both files are removed when it ends.
    """
    if not _HOLD_NAME.fullmatch(name):
        raise ValueError("name: 1 to 64 letters, digits or dashes")
    limit = min(max(float(limit), 0.0), HOLD_LIMIT)
    directory = Settings.from_env().file_storage_path
    running, go = os.path.join(directory, name + ".running"), os.path.join(directory, name + ".go")
    host = socket.gethostname()
    # Written whole, then renamed: whoever sees the marker reads the host's name, never an empty file.
    with open(running + ".tmp", "w") as marker:
        marker.write(host + "\n")
    os.replace(running + ".tmp", running)
    log.info("holding until %s exists", go)
    deadline = time.monotonic() + limit
    try:
        while not os.path.exists(go):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{go} did not appear within {limit:g}s")
            time.sleep(0.1)
    finally:
        for path in (running, go):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    log.info("released by %s", go)
    return host
