"""Secrets backends: reading, storing a rotated value, and the deploy preflight on the key."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smship import secretkey
from smship.deploy.keycheck import require_strong_key
from smship.errors import SmshipError
from smship.inventory import Secrets, parse
from smship.secrets import EnvBackend, FileBackend, SecretsNotWritable, backend_for, replace_values

ROOT = Path(__file__).resolve().parents[2]
STRONG = secretkey.generate()


def secrets_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "prod.env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_replacing_a_value_keeps_every_other_line_and_the_old_value_exactly():
    text = "# prod\nSM_DB_PASSWORD=db\nSM_SECRET_KEY=\"old value\"\nSM_SECRET_KEY_PREVIOUS=older\nSM_REDIS_PASSWORD=r\n"
    assert replace_values(text, Path("x"), "SM_SECRET_KEY", "new") == (
        "# prod\nSM_DB_PASSWORD=db\nSM_SECRET_KEY=new\nSM_SECRET_KEY_PREVIOUS=\"old value\"\nSM_REDIS_PASSWORD=r\n")
    assert replace_values("A=1\n", Path("x"), "SM_SECRET_KEY", "new") == "A=1\nSM_SECRET_KEY=new\n"


def test_the_file_backend_stores_a_new_value_atomically_private_and_keeps_the_previous(tmp_path):
    path = secrets_file(tmp_path, f"SM_SECRET_KEY={STRONG}\nSM_DB_PASSWORD=db\n")
    backend = FileBackend(path)
    fresh = secretkey.generate()
    backend.store("SM_SECRET_KEY", fresh)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = backend.read()
    assert values == {"SM_SECRET_KEY": fresh, "SM_SECRET_KEY_PREVIOUS": STRONG, "SM_DB_PASSWORD": "db"}
    assert [p.name for p in tmp_path.iterdir()] == ["prod.env"]  # no temporary file left behind
    newest = secretkey.generate()
    backend.store("SM_SECRET_KEY", newest)
    assert backend.read()["SM_SECRET_KEY_PREVIOUS"] == fresh  # one generation back is kept


def test_the_file_backend_refuses_a_file_others_can_read_before_writing(tmp_path):
    path = secrets_file(tmp_path, f"SM_SECRET_KEY={STRONG}\n", mode=0o644)
    with pytest.raises(SmshipError, match="readable by group or others"):
        FileBackend(path).store("SM_SECRET_KEY", "x")
    assert path.read_text() == f"SM_SECRET_KEY={STRONG}\n"


def test_the_env_backend_cannot_store_and_says_what_to_do(monkeypatch):
    monkeypatch.setenv("SM_SECRET_KEY", STRONG)
    backend = backend_for(Secrets(backend="env"))
    assert isinstance(backend, EnvBackend) and backend.read()["SM_SECRET_KEY"] == STRONG
    with pytest.raises(SecretsNotWritable) as refused:
        backend.store("SM_SECRET_KEY", "x")
    assert "CI secret store" in str(refused.value) and "--resume" in str(refused.value)
    assert STRONG not in str(refused.value)


def environment(tmp_path: Path, key: str | None, mode: str | None = None):
    data = yaml.safe_load((ROOT / "inventory.example").read_text())
    prod = data["environments"]["prod"]
    prod["secrets"] = {"backend": "file", "path": str(secrets_file(tmp_path, f"SM_SECRET_KEY={key}\n" if key else ""))}
    prod["env"] = {"SM_ENVIRONMENT": mode} if mode else {}
    path = tmp_path / "smship.yml"
    path.write_text(yaml.safe_dump(data))
    return path, parse(path.read_text(), path).environments["prod"]


def require_key(tmp_path: Path, key: str | None, mode: str | None = None) -> None:
    """Deploy's key preflight on inventory.example with this key and SM_ENVIRONMENT."""
    path, env = environment(tmp_path, key, mode)
    require_strong_key("prod", parse(path.read_text(), path).app, env)


@pytest.mark.parametrize("key,reason", [(None, "not set"), ("change-me", "known default"),
                                        ("correct-horse-battery-staple", "weak")])
def test_preflight_refuses_a_weak_key_outside_development_naming_the_source(tmp_path, key, reason):
    with pytest.raises(SmshipError) as refused:
        require_key(tmp_path, key)
    message = str(refused.value)
    assert reason in message and str(tmp_path / "prod.env") in message and "SM_ENVIRONMENT=production" in message


def test_preflight_lets_development_and_a_strong_key_through(tmp_path):
    require_key(tmp_path, "change-me", "development")
    require_key(tmp_path, "test", "testing")
    require_key(tmp_path, STRONG, "staging")
    with pytest.raises(SmshipError, match="SM_ENVIRONMENT=staging"):
        require_key(tmp_path, "change-me", "staging")


def test_deploy_refuses_a_weak_key_before_opening_any_connection(tmp_path):
    inventory, _ = environment(tmp_path, "change-me")
    result = subprocess.run([sys.executable, "-m", "smship", "deploy", "prod", "-i", str(inventory)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "300"})
    assert result.returncode == 1, result
    assert "known default value; refusing to deploy prod" in result.stderr
    assert "preflight:" not in result.stderr  # no host was asked anything
    assert "change-me" not in result.stdout + result.stderr


def test_a_command_reads_the_secrets_backend_once(tmp_path):
    """Deploy's key check, the checklist's settings and the log masking share one read."""
    from smship.checklist.facts import inventory_settings
    from smship.context import EnvContext
    from smship.steps.migrate import masking

    path, _ = environment(tmp_path, STRONG)
    secrets_file(tmp_path, f"SM_SECRET_KEY={STRONG}\nSM_DB_PASSWORD=db-password-1\nSM_REDIS_PASSWORD=redis-password-1\n"
                 "AWS_ACCESS_KEY_ID=key-id-1\nAWS_SECRET_ACCESS_KEY=key-secret-1\n")
    ctx = EnvContext.open("prod", path)
    require_strong_key("prod", ctx.app, ctx.env, ctx.secrets)
    secrets_file(tmp_path, "SM_SECRET_KEY=change-me\n")      # the backend changes under the command
    assert masking(ctx)(f"{STRONG} change-me") == "*** change-me"
    assert inventory_settings(ctx).secret_key_weakness is None
    require_strong_key("prod", ctx.app, ctx.env, ctx.secrets)
    with pytest.raises(SmshipError, match="known default"):
        require_strong_key("prod", ctx.app, ctx.env)            # read anew: the backend's new value
