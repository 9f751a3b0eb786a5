"""Settings, read from the environment under the app's own plain names."""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    app_env: str
    database_url: str
    redis_url: str
    broker_url: str
    secret_key: str
    admin_password: str | None
    tick_seconds: float
    pool_size: int
    max_overflow: int

    @property
    def debug(self) -> bool:
        return self.app_env == "development"


def load() -> Settings:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    return Settings(
        app_env=os.environ.get("APP_ENV", "development"),
        database_url=os.environ.get("DATABASE_URL", "postgresql+psycopg://localhost/taskboard"),
        redis_url=redis_url,
        broker_url=os.environ.get("CELERY_BROKER_URL", redis_url),
        secret_key=os.environ["SECRET_KEY"],
        admin_password=os.environ.get("ADMIN_PASSWORD") or None,
        tick_seconds=float(os.environ.get("TICK_SECONDS", "5")),
        pool_size=int(os.environ.get("DB_POOL_SIZE", "2")),
        max_overflow=int(os.environ.get("DB_MAX_OVERFLOW", "2")),
    )
