"""Tables, engines and the migration (SM010) state."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .settings import WORKSPACE_ROOT, Settings

metadata = sa.MetaData()

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("content_type", sa.String(255), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

beat_ticks = sa.Table(
    "beat_ticks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=False),
    sa.Column("release", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


def make_async_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_pre_ping=True,
        connect_args={"timeout": max(1.0, settings.health_timeout)},
    )


def make_sync_engine(settings: Settings) -> sa.Engine:
    return sa.create_engine(settings.sync_database_url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def alembic_ini(root: Path = WORKSPACE_ROOT) -> Path:
    return root / "host" / "alembic.ini"


@lru_cache(maxsize=4)
def script_head(root: Path = WORKSPACE_ROOT) -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(Config(str(alembic_ini(root))))
    return script.get_current_head()


@lru_cache(maxsize=4)
def script_revisions(root: Path = WORKSPACE_ROOT) -> frozenset[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(Config(str(alembic_ini(root))))
    return frozenset(rev.revision for rev in script.walk_revisions())


@dataclass
class MigrationState:
    """Where the database stands against this code's migrations.

    ``ok`` unless the database is behind the code (unmigrated or part way).
    A revision this code does not know is a newer release's migration: the
    code was rolled back, and expand/contract migrations keep old code
    working on the newer schema, so that is ``ok`` with ``ahead`` set.
    """

    current: str | None
    head: str | None
    ok: bool
    error: str | None = None
    ahead: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


async def read_migration_state(engine: AsyncEngine, root: Path = WORKSPACE_ROOT) -> MigrationState:
    head = script_head(root)
    try:
        async with engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: sa.inspect(c).has_table("alembic_version"))
            current = None
            if has_table:
                current = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
    except Exception as exc:  # the database is unreachable or broken
        return MigrationState(current=None, head=head, ok=False, error=f"{type(exc).__name__}: {exc}")
    ahead = current is not None and current != head and current not in script_revisions(root)
    return MigrationState(current=current, head=head, ok=current == head or ahead, ahead=ahead)
