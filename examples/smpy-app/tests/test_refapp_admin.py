import os
import subprocess
import sys

from refapp_testlib import APP_ROOT


def _cli(args, database_url, stdin=None, **env):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SM_")}
    full_env.update({"SM_DATABASE_URL": database_url, **env})
    return subprocess.run(
        [sys.executable, "-m", "refapp", *args], cwd=APP_ROOT, env=full_env, input=stdin, capture_output=True,
        text=True, timeout=60,
    )


def test_admin_bootstrap(postgres, make_settings, client_for):
    from refapp_testlib import migrate

    url = postgres.async_url(postgres.create_database())
    migrate(url)

    none = _cli(["has-admin"], url)
    assert none.returncode == 1 and none.stdout.strip() == "no admin"

    too_short = _cli(["create-admin", "--email", "ops@example.test"], url, stdin="short\n")
    assert too_short.returncode != 0

    created = _cli(["create-admin", "--email", "Ops@Example.test"], url, stdin="stdin-password-1\n")
    assert created.returncode == 0, created.stderr
    assert "stdin-password-1" not in created.stdout + created.stderr

    has = _cli(["has-admin"], url)
    assert has.returncode == 0 and has.stdout.strip() == "admin exists"

    # Running it again updates the password (from SM_ADMIN_PASSWORD) instead of failing.
    again = _cli(["create-admin", "--email", "ops@example.test"], url, stdin="", SM_ADMIN_PASSWORD="env-password-2")
    assert again.returncode == 0, again.stderr

    with client_for(make_settings(SM_DATABASE_URL=url)) as client:
        assert client.post("/login", json={"email": "ops@example.test", "password": "stdin-password-1"}).status_code == 401
        ok = client.post("/login", json={"email": "ops@example.test", "password": "env-password-2"})
        assert ok.status_code == 200 and ok.json()["is_admin"] is True
        assert client.get("/me").json()["email"] == "ops@example.test"

    import psycopg

    with psycopg.connect(postgres.dsn(url.rsplit("/", 1)[1])) as conn:
        stored = conn.execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("scrypt$") and "env-password-2" not in stored


def test_password_is_never_an_argument(postgres):
    url = postgres.async_url(postgres.create_database())
    result = _cli(["create-admin", "--email", "a@b.test", "--password", "x"], url)
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_has_admin_reports_database_errors(postgres):
    from refapp_testlib import free_port

    result = _cli(["has-admin"], f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing")
    assert result.returncode == 2 and "error" in result.stderr
