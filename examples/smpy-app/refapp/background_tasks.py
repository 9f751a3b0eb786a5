"""Tasks of the background_tasks module."""
from __future__ import annotations

import datetime as dt
import logging
import socket

from celery import shared_task

from .celery_app import ADD_TASK, BEAT_TASK
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
