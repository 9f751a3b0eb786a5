"""The database: SQLAlchemy (synchronous, psycopg 3) and the tables."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, Text, create_engine
from sqlalchemy.engine import Engine

metadata = MetaData()

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
)

tasks = Table(
    "tasks", metadata,
    Column("id", Integer, primary_key=True),
    Column("title", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, default=lambda: datetime.now(timezone.utc)),
)


@lru_cache(maxsize=None)
def engine(url: str, pool_size: int = 2, max_overflow: int = 2) -> Engine:
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow)
