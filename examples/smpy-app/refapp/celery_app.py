"""The Celery application shared by the web tier, workers and beat."""
from __future__ import annotations

import logging
import os
import tempfile

from celery import Celery
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

from . import logs
from .settings import Settings

log = logging.getLogger("refapp.worker")

# Modules (by SM_MODULES_ENABLED name) that carry Celery tasks.
TASK_MODULES = {"background_tasks": "refapp.background_tasks"}
ADD_TASK = "refapp.add"
BEAT_TASK = "refapp.record_beat_tick"
HOLD_TASK = "refapp.hold"
# Message header carrying the web request's correlation id ("correlation_id" itself is Celery's task id).
CID_HEADER = "sm_correlation_id"


def task_modules(settings: Settings) -> list[str]:
    return [TASK_MODULES[name] for name in settings.modules_enabled if name in TASK_MODULES]


def make_celery(settings: Settings) -> Celery:
    app = Celery("refapp", broker=settings.redis_url, backend=settings.redis_url, include=task_modules(settings))
    schedule_file = settings.beat_schedule_file or os.path.join(tempfile.gettempdir(), "refapp-celerybeat-schedule")
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        beat_schedule_filename=schedule_file,
        beat_schedule={
            "record-beat-tick": {"task": BEAT_TASK, "schedule": settings.beat_interval},
        },
        timezone="UTC",
    )
    return app


@setup_logging.connect
def _setup_logging(**_kwargs) -> None:
    settings = Settings.from_env()
    logs.configure_logging(settings.log_format, settings.log_level)


@before_task_publish.connect
def _propagate_correlation_id(headers=None, **_kwargs) -> None:
    cid = logs.correlation_id.get()
    if headers is not None and cid:
        headers.setdefault(CID_HEADER, cid)


@task_prerun.connect
def _adopt_correlation_id(task=None, **_kwargs) -> None:
    if task is None:
        return
    logs.correlation_id.set(getattr(task.request, CID_HEADER, None) or task.request.id)


@task_postrun.connect
def _drop_correlation_id(**_kwargs) -> None:
    logs.correlation_id.set(None)
