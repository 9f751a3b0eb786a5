"""Key generations without keys: fingerprints, what a host holds, the env file line the agent rewrites."""

from __future__ import annotations

import os
import stat

import pytest

from smship import secretkey
from smship.errors import SmshipError
from smship.remote import agent
from smship.remote.client import UnitKey
from smship.rotate.generations import HostKey, Names, key_fingerprint
from smship.templating import env_line

OLD, NEW = secretkey.generate(), secretkey.generate()


def test_a_fingerprint_tells_generations_apart_and_reveals_no_part_of_the_key():
    old, new = key_fingerprint("SM_SECRET_KEY", OLD), key_fingerprint("SM_SECRET_KEY", NEW)
    assert old != new and len(old) == 12 and int(old, 16) >= 0
    assert old not in OLD and key_fingerprint("OTHER", OLD) != old   # bound to the name too
    assert key_fingerprint("SM_SECRET_KEY", "") is None and key_fingerprint("SM_SECRET_KEY", None) is None


def test_a_host_holds_a_generation_only_when_its_file_and_every_running_unit_have_it():
    fp_old, fp_new = key_fingerprint("K", OLD), key_fingerprint("K", NEW)
    names = Names(fp_new, fp_old)
    done = HostKey("r1", fp_new, {"web": UnitKey(True, fp_new), "worker": UnitKey(False, None)})
    pending = HostKey("r1", fp_new, {"web": UnitKey(True, fp_old)})
    untouched = HostKey("r1", fp_old, {"web": UnitKey(True, fp_old)})
    assert done.holds(fp_new) and not pending.holds(fp_new) and not untouched.holds(fp_new)
    assert names.describe(done) == f"runs {fp_new} (current key)"
    assert names.describe(pending) == f"env file has {fp_new} (current key), but web is still running on {fp_old} (previous key)"
    assert names.describe(untouched) == f"runs {fp_old} (previous key)"
    assert "no longer has" in Names(fp_new, None).of(fp_old)


@pytest.mark.parametrize("value", [NEW, 'with "quotes" and \\ and spaces', "a#b"])
def test_the_agent_replaces_only_the_key_line_and_keeps_mode_and_owner(tmp_path, value):
    path = tmp_path / "env"
    before = f"# Managed by smship\nSM_ENVIRONMENT=production\nSM_SECRET_KEY={OLD}\nSM_TAIL=1\n"
    path.write_text(before)
    path.chmod(0o640)
    answer = agent.setenv({"env_file": str(path), "name": "SM_SECRET_KEY", "line": env_line("SM_SECRET_KEY", value)})
    assert answer == {"ok": True, "file": key_fingerprint("SM_SECRET_KEY", value)}
    after = path.read_text()
    assert after == before.replace(f"SM_SECRET_KEY={OLD}", env_line("SM_SECRET_KEY", value))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.stat().st_uid == os.getuid()
    assert agent._env_file_value(str(path), "SM_SECRET_KEY") == value


def test_the_agent_refuses_an_env_file_without_the_line(tmp_path):
    path = tmp_path / "env"
    path.write_text("SM_ENVIRONMENT=production\n")
    answer = agent.setenv({"env_file": str(path), "name": "SM_SECRET_KEY", "line": "SM_SECRET_KEY=x"})
    assert not answer["ok"] and "no SM_SECRET_KEY line" in answer["error"]
    assert path.read_text() == "SM_ENVIRONMENT=production\n"


def test_rotate_secret_refuses_other_names_and_the_env_backend_before_any_connection(tmp_path, monkeypatch):
    from smship.context import EnvContext
    from smship.rotate.rotate import rotate_secret
    from tests.unit.test_secrets import environment

    inventory, _ = environment(tmp_path, secretkey.generate())
    ctx = EnvContext.open("prod", inventory)
    with pytest.raises(SmshipError, match="rotates SM_SECRET_KEY only"):
        rotate_secret(ctx, name="SM_DB_PASSWORD")
    ctx.env = ctx.env.model_copy(update={"secrets": ctx.env.secrets.model_copy(update={"backend": "env", "path": None})})
    monkeypatch.setenv("SM_SECRET_KEY", OLD)
    with pytest.raises(SmshipError, match="CI secret store"):
        rotate_secret(ctx)
    monkeypatch.setenv("SM_SECRET_KEY", "change-me")
    with pytest.raises(SmshipError, match="known default.*--resume rolls out"):
        rotate_secret(ctx, resume=True)


def test_rotate_secret_help_says_what_rotation_does_and_explains_each_option():
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run([sys.executable, "-m", "smship", "rotate-secret", "--help"], capture_output=True,
                            text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0 and result.stdout.startswith("Usage: smship rotate-secret ENV [options]")
    assert "users must sign in" in result.stdout
    for option in ("--name", "--resume", "--undo", "--inventory", "--output"):
        assert option in result.stdout, option
