"""``python -m taskboard.seed``: create the first user, ``admin``, if it is missing.

Its password is ADMIN_PASSWORD; run once per deploy, it changes nothing when
the user exists, so a later password change in the app survives deploys.
"""
from __future__ import annotations

import sys

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from taskboard import db, settings, tokens

ADMIN = "admin"


def seed(config: settings.Settings) -> bool:
    """True when the user was created now."""
    if not config.admin_password:
        raise SystemExit("ADMIN_PASSWORD is not set: the first user needs a password")
    with db.engine(config.database_url).begin() as connection:
        if connection.execute(select(db.users.c.id).where(db.users.c.username == ADMIN)).first():
            return False
        created = connection.execute(
            insert(db.users).values(username=ADMIN, password_hash=tokens.hash_password(config.admin_password))
            .on_conflict_do_nothing(index_elements=["username"])).rowcount
    return bool(created)


if __name__ == "__main__":
    created = seed(settings.load())
    print("taskboard: user admin " + ("created" if created else "already exists"), file=sys.stderr)
