"""Alembic environment: migrates the database named by SM_DATABASE_URL with the sync psycopg driver."""
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool


def sync_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

url = os.environ.get("SM_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
if not url:
    raise SystemExit("SM_DATABASE_URL is not set")
url = sync_url(url)

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
