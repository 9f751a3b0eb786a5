"""Settings read from SM_* environment variables."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

WORKSPACE_ROOT = Path(__file__).resolve().parent.parent
NON_PROD_ENVIRONMENTS = frozenset({"development", "testing"})
DEFAULT_SECRET_KEY = "change-me-development-only"


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    return int(raw) if raw else default


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    return float(raw) if raw else default


def read_release_id(env: Mapping[str, str], root: Path) -> str:
    explicit = env.get("SM_RELEASE_ID", "").strip()
    if explicit:
        return explicit
    marker = root / "RELEASE_ID"
    try:
        text = marker.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or "dev"


@dataclass(frozen=True)
class Settings:
    environment: str = "development"
    secret_key: str = DEFAULT_SECRET_KEY
    database_url: str = "postgresql+asyncpg://localhost/refapp"
    redis_url: str = "redis://127.0.0.1:6379/0"
    db_pool_size: int = 10
    db_max_overflow: int = 20
    log_format: str = "text"
    log_level: str = "INFO"
    modules_enabled: tuple[str, ...] = ("background_tasks",)
    file_storage_backend: str = "filesystem"
    file_storage_path: str = "./uploads"
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    release_id: str = "dev"
    beat_interval: float = 10.0
    beat_schedule_file: str | None = None
    health_timeout: float = 2.0
    vite_dev_url: str = "http://localhost:5173"
    workspace_root: Path = field(default=WORKSPACE_ROOT)

    @property
    def is_production(self) -> bool:
        return self.environment not in NON_PROD_ENVIRONMENTS

    @property
    def static_dir(self) -> Path:
        return self.workspace_root / "static"

    @property
    def sync_database_url(self) -> str:
        return to_sync_url(self.database_url)

    def with_changes(self, **changes) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, root: Path | None = None) -> "Settings":
        env = os.environ if env is None else env
        root = WORKSPACE_ROOT if root is None else root
        modules = tuple(m.strip() for m in env.get("SM_MODULES_ENABLED", "background_tasks").split(",") if m.strip())
        return cls(
            environment=env.get("SM_ENVIRONMENT", "development").strip() or "development",
            secret_key=env.get("SM_SECRET_KEY", DEFAULT_SECRET_KEY),
            database_url=env.get("SM_DATABASE_URL", cls.database_url),
            redis_url=env.get("SM_REDIS_URL", cls.redis_url),
            db_pool_size=_int(env, "SM_DB_POOL_SIZE", 10),
            db_max_overflow=_int(env, "SM_DB_MAX_OVERFLOW", 20),
            log_format=env.get("SM_LOG_FORMAT", "text").strip().lower() or "text",
            log_level=env.get("SM_LOG_LEVEL", "INFO").strip().upper() or "INFO",
            modules_enabled=modules,
            file_storage_backend=env.get("SM_FILE_STORAGE_BACKEND", "filesystem").strip().lower() or "filesystem",
            file_storage_path=env.get("SM_FILE_STORAGE_PATH", "./uploads"),
            s3_bucket=env.get("SM_S3_BUCKET", ""),
            s3_region=env.get("SM_S3_REGION", "us-east-1") or "us-east-1",
            s3_endpoint_url=env.get("SM_S3_ENDPOINT_URL") or None,
            release_id=read_release_id(env, root),
            beat_interval=_float(env, "SM_BEAT_INTERVAL", 10.0),
            beat_schedule_file=env.get("SM_BEAT_SCHEDULE_FILE") or None,
            health_timeout=_float(env, "SM_HEALTH_TIMEOUT", 2.0),
            vite_dev_url=env.get("SM_VITE_DEV_URL", "http://localhost:5173").rstrip("/"),
            workspace_root=root,
        )


def to_sync_url(url: str) -> str:
    """Turn an asyncpg SQLAlchemy URL into the psycopg (v3) equivalent."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
