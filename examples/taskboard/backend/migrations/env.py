"""Alembic's environment: online migrations against DATABASE_URL."""
import os

from alembic import context
from sqlalchemy import create_engine

from taskboard.db import metadata

engine = create_engine(os.environ.get("DATABASE_URL", "postgresql+psycopg://localhost/taskboard"))
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
