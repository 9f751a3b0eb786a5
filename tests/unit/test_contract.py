"""The app contract in the inventory: smpy defaults, other shapes, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from smship.inventory import InventoryError, load

MINIMAL = {
    "app": {"name": "shop"},
    "environments": {"prod": {"domain": "shop.example.com", "lab": True,
                              "tls": {"source": "self-signed"},
                              "hosts": [{"name": "web1", "address": "10.0.0.1", "roles": ["web"]}]}},
}


def loaded(tmp_path: Path, app: dict | None = None, env: dict | None = None):
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data["app"].update(app or {})
    data["environments"]["prod"].update(env or {})
    path = tmp_path / "smship.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load(path)


def problems(tmp_path: Path, app: dict | None = None, env: dict | None = None) -> list[str]:
    with pytest.raises(InventoryError) as caught:
        loaded(tmp_path, app, env)
    return caught.value.problems


def test_an_inventory_without_a_contract_gets_the_smpy_layout(tmp_path):
    inv = loaded(tmp_path)
    app, env = inv.app, inv.environment("prod")
    assert (app.root, app.lock, app.python, app.interpreter) == (".", None, None, "/usr/bin/python3")
    assert (app.web_app, app.worker_app, app.beat_app) == ("main:app", "scripts.run_worker:celery", "scripts.run_worker:celery")
    assert app.migrate.command == ["alembic", "upgrade", "head"] and app.migrate.cwd == "host"
    assert app.release_commands == []
    assert (app.frontend.dir, app.frontend.output, app.frontend.url) == ("client_app", "static/dist", "/static/dist/")
    assert app.frontend.install_command(has_lock=True)[:2] == ["npm", "ci"]
    assert app.frontend.install_command(has_lock=False)[:2] == ["npm", "install"]
    assert (app.settings.database_url, app.settings.secret_key, app.settings.database_driver) == (
        "SM_DATABASE_URL", "SM_SECRET_KEY", "postgresql+asyncpg")
    assert (env.health.live.path, env.health.live.expect) == ("/health/live", "status")
    assert env.health.ready.path == "/health/ready" and env.checks.skip == []


def test_an_app_of_another_shape_describes_itself(tmp_path):
    inv = loaded(tmp_path, app={
        "root": "backend", "python": "3.13",
        "web": {"app": "shop.api:app", "args": ["--root-path", "/api"]},
        "worker": {"app": "shop.tasks:celery", "args": ["--prefetch-multiplier", "1"]},
        "migrate": False,
        "release_commands": ["python -m shop.seed --if-empty", ["python", "-c", "print(1)"]],
        "frontend": {"dir": "../frontend", "env": {"VITE_API_URL": "https://{domain}/api"},
                     "output": "../frontend/dist", "url": "/app/", "manifest": None},
        "settings": {"database_url": "DATABASE_URL", "database_driver": "postgresql", "secret_key": "SECRET_KEY",
                     "broker_url": "CELERY_BROKER_URL", "secrets": ["STRIPE_KEY"]},
    }, env={"health": {"live": "/healthz/", "ready": {"path": "/ready/", "expect": "body", "body": "true"}},
            "checks": {"skip": ["admin", "log-format"]}})
    app, env = inv.app, inv.environment("prod")
    assert app.interpreter == "/usr/bin/python3.13"
    assert app.beat_app == "shop.tasks:celery"
    assert app.migrate is None
    assert app.release_commands == [["python", "-m", "shop.seed", "--if-empty"], ["python", "-c", "print(1)"]]
    assert app.frontend.build_env("shop.example.com") == {"VITE_API_URL": "https://shop.example.com/api"}
    assert env.health.ready.expect == "body" and env.health.ready.body == "true"
    assert env.health.live.path == "/healthz/"
    assert env.checks.skip == ["admin", "log-format"]


def test_frontend_false_is_an_api_only_app(tmp_path):
    assert loaded(tmp_path, app={"frontend": False}).app.frontend is None


def test_the_old_interpreter_path_still_works(tmp_path):
    assert loaded(tmp_path, app={"python": "/usr/bin/python3"}).app.interpreter == "/usr/bin/python3"


@pytest.mark.parametrize(("app", "env", "expected"), [
    ({"web": {"app": "shop api"}}, None, "app.web.app: 'shop api' is not an import path"),
    ({"worker": {"app": "tasks:"}}, None, "app.worker.app: 'tasks:' is not an import path"),
    ({"python": "three"}, None, "app.python: 'three' is neither a Python version"),
    ({"root": "/srv/app"}, None, "app.root: '/srv/app' must be a path relative to the repository"),
    ({"migrate": {"command": ""}}, None, "app.migrate.command: must not be empty"),
    ({"release_commands": ["echo 'unclosed"]}, None, "app.release_commands: \"echo 'unclosed\" is not a command line"),
    ({"frontend": {"url": "static"}}, None, "app.frontend.url: 'static' must be a URL path that starts and ends with '/'"),
    ({"frontend": {"env": {"A": "x\ny"}}}, None, "app.frontend.env.A: must be a single line without control characters"),
    ({"settings": {"secret_key": "SECRET KEY"}}, None, "app.settings: secret_key: 'SECRET KEY' is not an environment variable name"),
    ({"settings": {"database_driver": "mysql"}}, None, "app.settings.database_driver: Input should be"),
    (None, {"health": {"ready": {"path": "/ready", "expect": "body"}}},
     "environments.prod.health.ready.body: required with expect: body, and only then"),
    (None, {"health": {"live": "healthz"}}, "environments.prod.health.live.path: must be a URL path"),
    (None, {"env": {"SM_LOG_FORMAT": "json\rX"}}, "environments.prod.env.SM_LOG_FORMAT: must be a single line"),
    (None, {"env": {"SM_LOG_FORMAT\n": "json"}}, "environment variable names are upper case letters"),
    (None, {"checks": {"skip": ["Admin!"]}}, "environments.prod.checks.skip: 'Admin!' is not a check; checks are: hosts,"),
])
def test_a_bad_contract_value_is_one_line_with_file_line_and_field(tmp_path, app, env, expected):
    found = problems(tmp_path, app, env)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'smship.yml'}:") and expected in found[0], found
