"""Admin bootstrap commands: `python -m refapp create-admin --email E` and `python -m refapp has-admin`."""
from __future__ import annotations

import argparse
import datetime as dt
import getpass
import os
import sys

import sqlalchemy as sa

from .db import make_sync_engine, users
from .security import hash_password
from .settings import Settings

MIN_PASSWORD = 8


def _read_password() -> str:
    from_env = os.environ.get("SM_ADMIN_PASSWORD")
    if from_env:
        return from_env
    if sys.stdin.isatty():
        return getpass.getpass("Admin password: ")
    return sys.stdin.readline().rstrip("\r\n")


def create_admin(email: str) -> int:
    email = email.strip().lower()
    if "@" not in email:
        print(f"error: {email!r} is not an email address", file=sys.stderr)
        return 2
    password = _read_password()
    if len(password) < MIN_PASSWORD:
        print(f"error: the password must be at least {MIN_PASSWORD} characters (stdin or SM_ADMIN_PASSWORD)", file=sys.stderr)
        return 2
    engine = make_sync_engine(Settings.from_env())
    try:
        with engine.begin() as conn:
            existing = conn.execute(sa.select(users.c.id).where(users.c.email == email)).scalar()
            values = {"password_hash": hash_password(password), "is_admin": True}
            if existing is None:
                conn.execute(users.insert().values(email=email, created_at=dt.datetime.now(dt.timezone.utc), **values))
                print(f"created admin {email}")
            else:
                conn.execute(users.update().where(users.c.id == existing).values(**values))
                print(f"updated admin {email}")
    finally:
        engine.dispose()
    return 0


def has_admin() -> int:
    engine = make_sync_engine(Settings.from_env())
    try:
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(users).where(users.c.is_admin)).scalar_one()
    finally:
        engine.dispose()
    print("admin exists" if count else "no admin")
    return 0 if count else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m refapp")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-admin", help="create or promote an admin; password from stdin or SM_ADMIN_PASSWORD")
    create.add_argument("--email", required=True)
    sub.add_parser("has-admin", help="exit 0 if an admin exists, 1 if not")
    args = parser.parse_args(argv)
    try:
        if args.command == "create-admin":
            return create_admin(args.email)
        return has_admin()
    except sa.exc.SQLAlchemyError as exc:
        print(f"error: database: {type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
