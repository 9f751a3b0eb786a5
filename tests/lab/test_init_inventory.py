"""The reference app deployed from the inventory `smship init` writes for it.

`smship init` on examples/smpy-app, filled in with only the session fleet's
hosts, domain, TLS and secrets file: the app contract it declares is the one
the session's own inventory deploys, and it provisions and deploys the app.
The last story told on the session's fleet (its inventory leaves out what the
lab's adds: it provisions the fleet its own way).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from labkit import INIT_ENV, checkout_app, fill_in, init_inventory, remote, run_smship, write_secrets

pytestmark = pytest.mark.lab

SMPY_APP = Path(__file__).resolve().parents[2] / "examples" / "smpy-app"


def test_the_reference_app_deploys_from_its_init_inventory(lab, tmp_path):
    """smship init on examples/smpy-app, filled in with only the session fleet's hosts, domain and
    secrets: the app contract the session's deploys use, and an inventory that provisions and deploys it."""
    from smship.inventory import load

    app = checkout_app(tmp_path / "smpy-app", SMPY_APP)
    written = init_inventory(app, tmp_path / "smship.yml")
    data = yaml.safe_load(written)
    secrets_file = tmp_path / "secrets.env"
    write_secrets(secrets_file, lab.secrets, [data["app"]["settings"]["secret_key"], *data["app"]["settings"]["secrets"],
                                              "SM_DB_PASSWORD", "SM_REDIS_PASSWORD"])
    lab_env = next(iter(yaml.safe_load(lab.inventory.read_text())["environments"].values()))
    lab_roles = {host["name"]: host["roles"] for host in lab_env["hosts"]}
    inventory = tmp_path / "smship.yml"
    inventory.write_text(fill_in(written, lab.inventory, secrets_file, lab_env["domain"], lab_roles))
    mine, sessions = load(inventory), load(lab.inventory)
    assert mine.app.name == sessions.app.name
    for field in ("root", "web_app", "worker_app", "beat_app", "migrate", "release_commands", "frontend"):
        assert getattr(mine.app, field) == getattr(sessions.app, field) or field == "frontend" and \
            mine.app.frontend.model_copy(update={"install": None}) == sessions.app.frontend, field
    assert mine.app.settings.model_copy(update={"secrets": []}) == sessions.app.settings

    run_smship("provision", INIT_ENV, inventory=inventory, check=True)
    deployed = run_smship("deploy", INIT_ENV, "-o", "json", inventory=inventory, check=True)
    release = deployed.document["audit"]["release"]
    app_hosts = [name for name, roles in lab_roles.items() if {"web", "worker"} & set(roles)]
    for host in app_hosts:
        assert remote(lab, host, f"basename \"$(readlink /srv/{mine.app.name}/current)\"").strip() == release, host
    lb = next(name for name, roles in lab_roles.items() if "lb" in roles)
    with httpx.Client(base_url=f"https://{lab.address(lb)}", verify=False, timeout=30,
                      headers={"Host": lab_env["domain"]}) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "healthy", ready.text
        version = client.get("/version")
        assert version.status_code == 200 and version.json()["release"] == release, version.text[:300]
