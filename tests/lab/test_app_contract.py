"""A non-default app contract on real hosts: the app's own setting names, process path and arguments,
release commands, a plain-body health endpoint, and rotate-secret under the app's key name.

The lab: lab1 = [db, lb, beat], lab2 and lab3 = [web, worker]. The app is a
variant of the reference app that reads ``APP_ENV``, ``APP_SECRET``,
``DATABASE_URL``, ``REDIS_URL`` and ``UPLOADS_DIR`` (falling back on the
``SM_*`` names, so the fleet can move from one contract to the other) and
whose ASGI app is ``asgi:app`` with a ``/ping/`` route answering ``pong``.
Once the inventory declares that contract, the hosts' env files hold only
the app's names, so the running processes can have read nothing else.
At the end the lab's own inventory is provisioned again and the lab's
first release put back, as the other lab tests expect.

Keys never appear in an assertion message: comparisons of values are made
first and only their outcome is asserted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from labkit import ENV, WEB_UNIT, lab_env, live_release, remote, run_smship, web_unit
from smship.rotate.generations import key_fingerprint
from smship.secrets import read_file_backend

pytestmark = pytest.mark.lab

WEB = ("lab2", "lab3")
APP_HOSTS = ("lab1", "lab2", "lab3")
ENV_FILE = "/srv/refapp/shared/env"
SEEDED = "/srv/refapp/shared/uploads/seeded"

OWN_NAMES = [
    ("refapp/settings.py", [
        ('env.get("SM_ENVIRONMENT", "development")', 'env.get("APP_ENV") or env.get("SM_ENVIRONMENT", "development")'),
        ('env.get("SM_SECRET_KEY", DEFAULT_SECRET_KEY)', 'env.get("APP_SECRET") or env.get("SM_SECRET_KEY", DEFAULT_SECRET_KEY)'),
        ('env.get("SM_DATABASE_URL", cls.database_url)', 'env.get("DATABASE_URL") or env.get("SM_DATABASE_URL", cls.database_url)'),
        ('env.get("SM_REDIS_URL", cls.redis_url)', 'env.get("REDIS_URL") or env.get("SM_REDIS_URL", cls.redis_url)'),
        ('env.get("SM_FILE_STORAGE_PATH", "./uploads")', 'env.get("UPLOADS_DIR") or env.get("SM_FILE_STORAGE_PATH", "./uploads")'),
    ]),
    ("host/migrations/env.py", [
        ('url = os.environ.get("SM_DATABASE_URL") or', 'url = os.environ.get("DATABASE_URL") or os.environ.get("SM_DATABASE_URL") or'),
    ]),
]
ASGI = '''"""The variant's ASGI app: the reference app plus a plain-text health endpoint."""
from fastapi.responses import PlainTextResponse

from refapp.web import create_app

app = create_app()


@app.get("/ping/", response_class=PlainTextResponse)
async def ping() -> str:
    return "pong\\n"
'''
SEED = ("python -c \"import os, pathlib; p = pathlib.Path(os.environ['UPLOADS_DIR']) / 'seeded'; "
        "p.write_text((p.read_text() if p.exists() else '') + 'x')\"")
# Fails, printing the key it read: the deploy's output must show it masked.
LEAKY = "python -c \"import os, sys; sys.exit('seeding refused with key ' + os.environ['APP_SECRET'])\""


def contract(secrets_path, release_commands: list[str]):
    def change(data: dict) -> None:
        data["app"].update({
            "web": {"app": "asgi:app", "args": ["--header", "x-contract:yes please"]},
            "settings": {"environment": "APP_ENV", "secret_key": "APP_SECRET", "database_url": "DATABASE_URL",
                         "redis_url": "REDIS_URL", "file_storage_path": "UPLOADS_DIR"},
            "release_commands": release_commands,
        })
        env = lab_env(data)
        env["env"]["APP_ENV"] = env["env"].pop("SM_ENVIRONMENT", "production")
        env["health"] = {"timeout": 45, "ready": {"path": "/ping/", "expect": "body", "body": "pong"}}
        env["secrets"] = {"backend": "file", "path": str(secrets_path)}
        env["keep_releases"] = 10  # the lab's release of before this module stays to go back to
    return change


def env_names(lab, host: str) -> set[str]:
    return set(remote(lab, host, f"cut -d= -f1 {ENV_FILE} | grep -v '^#'").split())


def process_names(lab, host: str, unit: str) -> set[str]:
    script = f"tr '\\0' '\\n' < /proc/$(systemctl show -p MainPID --value {unit})/environ | cut -d= -f1"
    return set(remote(lab, host, script).split())


def ping_headers(lab, host: str) -> str:
    return remote(lab, host, "curl -sk -D - -o /dev/null -H 'Host: refapp.lab.test' https://127.0.0.1/ping/").lower()


@pytest.fixture(scope="module")
def own_contract(lab, deployed, variants, tmp_path_factory):
    """The variant deployed under the lab's inventory, a secrets file with APP_SECRET, and the way back."""
    before = live_release(lab, "lab2")
    root = tmp_path_factory.mktemp("contract")
    secrets = root / "secrets.env"
    shutil.copyfile(lab.secrets, secrets)
    secrets.chmod(0o600)
    values = read_file_backend(secrets)
    with secrets.open("a") as handle:
        handle.write(f"APP_SECRET={values['SM_SECRET_KEY']}\n")
    plain = variants.inventory(edits=dict(OWN_NAMES), files={"asgi.py": ASGI}, message="own setting names")
    # The code goes live under the smpy contract first: the units of the new one import asgi:app.
    run_smship("deploy", ENV, inventory=plain, check=True)

    def inventory(release_commands: list[str] | None, name: str) -> Path:
        """The variant's inventory: with the app's own contract (and these release commands), or
        (None) the smpy contract with web hosts only."""
        data = yaml.safe_load(plain.read_text())
        if release_commands is None:
            for host in lab_env(data)["hosts"]:
                host["roles"] = [role for role in host["roles"] if role not in ("worker", "beat")]
            lab_env(data)["keep_releases"] = 10
        else:
            contract(secrets, release_commands)(data)
        (root / name).mkdir(exist_ok=True)
        path = root / name / "smship.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    yield inventory, secrets
    run_smship("provision", ENV, inventory=lab.inventory, check=True)
    back = run_smship("rollback", ENV, "--to", before, inventory=lab.inventory)
    if back.returncode != 0:  # pruned after all: the reference app again, as a new release
        run_smship("deploy", ENV, inventory=lab.inventory, check=True)
    names = env_names(lab, "lab2")
    assert "SM_SECRET_KEY" in names and "APP_SECRET" not in names


def test_a_declared_contract_runs_on_the_hosts_under_the_apps_names(lab, own_contract):
    inventory, secrets = own_contract
    leaky = inventory([LEAKY], "leaky")
    run_smship("provision", ENV, inventory=leaky, check=True)
    for host in APP_HOSTS:
        names = env_names(lab, host)
        assert {"APP_ENV", "APP_SECRET", "DATABASE_URL", "REDIS_URL", "UPLOADS_DIR"} <= names, (host, names)
        assert not {"SM_SECRET_KEY", "SM_DATABASE_URL", "SM_REDIS_URL", "SM_ENVIRONMENT"} & names, (host, names)
    exec_start = remote(lab, "lab2", f"systemctl show -p ExecStart {WEB_UNIT}")
    assert "asgi:app" in exec_start and "main:app" not in exec_start
    assert "x-contract: yes please" in ping_headers(lab, "lab2")  # the quoted argument reached uvicorn whole

    # A failing release command stops the deploy before any restart, named, with the key masked.
    live = {h: live_release(lab, h) for h in APP_HOSTS}
    remote(lab, "lab2", f"rm -f {SEEDED}")
    # Forced, as the next deploys: the code is plain's, live already; the contract changes what runs around it.
    refused = run_smship("deploy", ENV, "--force", inventory=leaky, check=False)
    key = read_file_backend(secrets)["APP_SECRET"]
    leaked = key in refused.output
    assert not leaked, "the deploy's output shows the key"
    assert "failed (release command); no host was restarted" in refused.output, refused
    assert "seeding refused with key ***" in refused.output, refused
    assert {h: live_release(lab, h) for h in APP_HOSTS} == live

    # The good one runs once per deploy, as the app user with the env file; /ping/ answers the health gate.
    good = inventory([SEED], "good")
    deployed = run_smship("deploy", ENV, "--force", inventory=good, check=True)
    assert "release command: python -c" in deployed.output and "HTTP 200 'pong'" in deployed.output, deployed
    assert remote(lab, "lab2", f"cat {SEEDED}").strip() == "x"
    assert remote(lab, "lab2", f"stat -c %U {SEEDED}").strip() == "refapp"
    for host in WEB:
        assert live_release(lab, host) != live[host]
        names = process_names(lab, host, web_unit(lab, host))
        assert "APP_SECRET" in names and "SM_SECRET_KEY" not in names, (host, names)
    assert "APP_SECRET" in process_names(lab, "lab1", "refapp-beat.service")

    checked = run_smship("check", ENV, "-o", "json", inventory=good)
    verdicts = {c["name"]: c for c in checked.document["checks"]}
    for name in ("environment", "secret-key", "database-url", "log-format", "migrations"):
        assert verdicts[name]["status"] == "pass", verdicts[name]
    assert "APP_SECRET is strong" in verdicts["secret-key"]["reason"]


def test_rotate_secret_rotates_the_key_under_the_apps_name(lab, own_contract):
    inventory, secrets = own_contract
    good = inventory([SEED], "good")
    old = key_fingerprint("APP_SECRET", read_file_backend(secrets)["APP_SECRET"])
    run = run_smship("rotate-secret", ENV, "-o", "json", inventory=good, check=True)
    values = read_file_backend(secrets)
    new = key_fingerprint("APP_SECRET", values["APP_SECRET"])
    assert new != old and key_fingerprint("APP_SECRET", values["APP_SECRET_PREVIOUS"]) == old
    assert run.document["key"]["name"] == "APP_SECRET" and run.document["key"]["current"] == new
    # Every running process holds the new key, read under the app's name from /proc/PID/environ.
    for host, row in run.document["generations"].items():
        assert row["current"], (host, row)
        assert {u["fingerprint"] for u in row["units"].values() if u["running"]} == {new}, (host, row)
    refused = run_smship("rotate-secret", ENV, "--name", "SM_SECRET_KEY", inventory=good, check=False)
    assert "rotates APP_SECRET only" in refused.output, refused


def test_a_web_tier_without_celery_provisions_and_deploys(lab, own_contract):
    inventory, _ = own_contract
    web_only = inventory(None, "web-only")
    before = {h: live_release(lab, h) for h in WEB}
    run_smship("provision", ENV, inventory=web_only, check=True)
    for host, unit in [(h, f"refapp-worker{u}.service") for h in WEB for u in ("@", "@a", "@b", "")] + \
            [("lab1", "refapp-beat.service")]:
        assert remote(lab, host, f"test -e /etc/systemd/system/{unit} && echo yes || echo no").strip() == "no"
        assert remote(lab, host, f"systemctl is-active {unit} || true").strip() != "active"
    run = run_smship("deploy", ENV, "-o", "json", "--force", inventory=web_only, check=True)
    assert "deploy: workers" not in run.output, run
    assert sorted(run.document["audit"]["hosts"]) == list(WEB)
    for host in WEB:
        assert live_release(lab, host) != before[host]
    checked = run_smship("check", ENV, "-o", "json", inventory=web_only)
    beat = next(c for c in checked.document["checks"] if c["name"] == "beat")
    assert beat["status"] == "pass" and "no beat in this environment" in beat["reason"], beat
