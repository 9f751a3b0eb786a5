"""``smship init``: what it reads from an app, and that its inventory loads once filled in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from smship.contract import Frontend, Migrate, SettingNames
from smship.init import render, survey
from smship.inventory import InventoryError, parse

ROOT = Path(__file__).resolve().parents[2]
TASKBOARD = ROOT / "examples" / "taskboard"
SMPY_APP = ROOT / "examples" / "smpy-app"


def fill_in(text: str, secrets: Path) -> str:
    """What a user adds to init's inventory: domain, TLS files, the secrets file and hosts."""
    data = yaml.safe_load(text)
    env = data["environments"]["prod"]
    env["domain"] = "app.example.com"
    env["tls"].update(certificate="certs/app.pem", key="certs/app.key")
    env["secrets"]["path"] = str(secrets)
    for number, host in enumerate(env["hosts"], 11):
        host["address"] = f"203.0.113.{number}"
    return yaml.safe_dump(data, sort_keys=False)


def inventory_of(app: Path, tmp_path: Path):
    path = tmp_path / "smship.yml"
    text = render(survey(app), path)
    with pytest.raises(InventoryError) as refused:
        parse(text, path)  # the placeholders keep it from loading as written
    assert "environments.prod.domain" in str(refused.value)
    return text, parse(fill_in(text, tmp_path / "secrets.env"), path)


def test_the_taskboard_monorepo_is_read_as_it_is(tmp_path):
    text, inventory = inventory_of(TASKBOARD, tmp_path)
    app = inventory.app
    assert (app.name, app.root) == ("taskboard", "backend")
    assert (app.web_app, app.worker_app, app.beat_app) == ("taskboard.api:app", "taskboard.jobs:celery",
                                                           "taskboard.jobs:celery")
    assert app.migrate == Migrate(command=["alembic", "upgrade", "head"], cwd=".")
    assert app.release_commands == [["python", "-m", "taskboard.seed"]]
    assert app.frontend.dir == "../frontend" and app.frontend.output == "../frontend/dist"
    assert app.frontend.install_command(has_lock=True) == ["npm", "install"]
    assert app.frontend.build_env("tasks.example.com") == {"TASKBOARD_API_URL": "https://tasks.example.com"}
    assert app.settings == SettingNames(
        environment="APP_ENV", database_url="DATABASE_URL", database_driver="postgresql+psycopg",
        redis_url="REDIS_URL", broker_url="CELERY_BROKER_URL", secret_key="SECRET_KEY",
        file_storage_path=None, log_format=None, db_pool_size="DB_POOL_SIZE", db_max_overflow="DB_MAX_OVERFLOW",
        secrets=["ADMIN_PASSWORD"])
    health = inventory.environments["prod"].health
    assert (health.ready.path, health.ready.expect, health.ready.body) == ("/healthz/", "body", "true")
    assert inventory.environments["prod"].env["APP_ENV"] == "production"
    # Where each value came from is said beside it; what was guessed says so.
    assert "app: taskboard.api:app  # found: backend/taskboard/api.py:" in text
    assert "app: taskboard.jobs:celery  # found: backend/taskboard/jobs.py:" in text
    assert "its schedule: found: backend/taskboard/jobs.py:" in text
    assert "# lock: ../uv.lock  (found: uv.lock" in text
    assert "requires Python >=3.11 (found: backend/pyproject.toml:" in text
    assert "install: npm install  # found: frontend/package.json (no lock file beside it)" in text
    assert "database_driver: postgresql+psycopg  # found: backend/" in text
    assert "python -m taskboard.seed  # GUESS:" in text
    assert "url: /frontend/  # GUESS:" in text


def test_the_reference_app_reads_as_the_defaults(tmp_path):
    text, inventory = inventory_of(SMPY_APP, tmp_path)
    app = inventory.app
    assert (app.root, app.web_app, app.worker_app) == (".", "main:app", "scripts.run_worker:celery")
    assert app.migrate == Migrate()
    assert app.frontend == Frontend(install=["npm", "ci"])
    assert app.settings == SettingNames(secrets=["SM_ADMIN_PASSWORD"])
    health = inventory.environments["prod"].health
    assert (health.live.path, health.live.expect, health.ready.path) == ("/health/live", "status", "/health/ready")
    assert "app: main:app  # found: main.py:4 (made by create_app() in refapp/web.py)" in text
    assert "manifest: .vite/manifest.json  # found: client_app/vite.config.js:" in text


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(body))
    return root


def test_an_api_only_app_with_pydantic_settings(tmp_path):
    app = _write(tmp_path / "svc", {
        "pyproject.toml": '[project]\nname = "Svc_API"\nrequires-python = ">=3.13"\n',
        "requirements.txt": "fastapi\n",
        "svc/__init__.py": "",
        "svc/config.py": """
            import os
            from pydantic_settings import BaseSettings, SettingsConfigDict
            class Config(BaseSettings):
                model_config = SettingsConfigDict(env_prefix="svc_")
                database_url: str = "postgresql+asyncpg://localhost/svc"
                redis_url: str = "redis://localhost"
                secret_key: str
                environment: str = "dev"
                sentry_dsn: str = ""
            TIMEOUT = os.getenv("SVC_TIMEOUT", "3")
            """,
        "svc/app.py": """
            from fastapi import FastAPI
            application = FastAPI()
            @application.get("/healthz")
            def healthz():
                return {"ok": True}
            """,
        ".env": "SVC_SECRET_KEY=do-not-copy-me\n",
    })
    found = survey(app)
    assert (found.web.value, found.root.value, found.worker, found.frontend.value) == ("svc.app:application", ".", None, False)
    assert found.settings["secret_key"].value == "SVC_SECRET_KEY"
    assert found.settings["database_driver"].value == "postgresql+asyncpg"
    assert [fact.value for fact in found.secrets] == ["SVC_SENTRY_DSN"]
    assert found.python.value == "3.13" and found.python.where is None  # a guess, said to be one
    assert found.lock.value == "requirements.txt"
    text = render(found, tmp_path / "smship.yml")
    assert "do-not-copy-me" not in text
    assert "migrate: false  # GUESS: no alembic.ini found" in text
    data = yaml.safe_load(fill_in(text, tmp_path / "secrets.env"))
    assert data["environments"]["prod"]["hosts"][1]["roles"] == ["db"]
    inventory = parse(yaml.safe_dump(data), tmp_path / "smship.yml")
    assert inventory.app.name == "svc-api" and inventory.app.frontend is None and inventory.app.migrate is None
    assert inventory.environments["prod"].health.ready.expect == "2xx"  # nothing says what healthy is: any 2xx
    assert "path: /healthz}  # found: svc/app.py:4 (GUESS: any 2xx counts as healthy)" in text


def smship(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smship", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_init_writes_once_and_replaces_only_with_force(tmp_path):
    first = smship("init", "--app", str(TASKBOARD), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    written = (tmp_path / "smship.yml").read_text()
    assert "source: " + str(Path("..") / Path(*TASKBOARD.relative_to("/").parts)) not in written
    assert yaml.safe_load(written)["app"]["source"] == str(Path(__import__("os").path.relpath(TASKBOARD, tmp_path)))
    (tmp_path / "smship.yml").write_text("mine\n")
    again = smship("init", "--app", str(TASKBOARD), cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr and "--force" in again.stderr
    assert (tmp_path / "smship.yml").read_text() == "mine\n"
    forced = smship("init", "--app", str(TASKBOARD), "--output", "other/inv.yml", cwd=tmp_path)
    assert forced.returncode == 0 and (tmp_path / "other" / "inv.yml").read_text().startswith("# Written by `smship init`")
    assert smship("init", "--app", str(TASKBOARD), "--force", cwd=tmp_path).returncode == 0
    assert (tmp_path / "smship.yml").read_text() == written
    missing = smship("init", "--app", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 1 and "no such directory" in missing.stderr


def test_init_has_help():
    result = smship("init", "--help", cwd=ROOT)
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: smship init [options]")
    for option in ("--app", "--output", "--force"):
        assert option in result.stdout
