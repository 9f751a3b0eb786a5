"""The Celery app of the workers and of beat, with its periodic tick."""
from __future__ import annotations

import os
import tempfile
import time

import redis
from celery import Celery

from taskboard import settings

TICK_KEY = "taskboard:ticks"

_settings = settings.load()
celery = Celery("taskboard", broker=_settings.broker_url, backend=_settings.redis_url)
celery.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_expires=600,
    broker_connection_retry_on_startup=True,
    timezone="UTC",
    # The release directory is not the app user's to write: beat keeps its state elsewhere.
    beat_schedule_filename=os.path.join(tempfile.gettempdir(), "taskboard-beat-schedule"),
    beat_schedule={"tick": {"task": "taskboard.tick", "schedule": _settings.tick_seconds}},
)


@celery.task(name="taskboard.add")
def add(a: int, b: int) -> int:
    return a + b


@celery.task(name="taskboard.tick")
def tick() -> int:
    """Count beat's ticks in Redis, where the API (and anyone) can read them."""
    client = redis.Redis.from_url(_settings.redis_url)
    client.hset(TICK_KEY, mapping={"last": time.time()})
    return client.hincrby(TICK_KEY, "count", 1)
