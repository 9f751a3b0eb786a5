"""`smship rotate-secret` on real hosts: sessions, env files, generations, and a host down.

The lab: lab1 = [db, lb, beat], lab2 and lab3 = [web, worker]. The tests
rotate through a copy of the lab's secrets file (the backend must be
written); at the end `--resume` with the lab's own inventory brings every
host back to the lab's key, so other tests find the lab as it was.

Keys never appear in an assertion message: comparisons of values are made
first and only their outcome is asserted (pytest would print both sides).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from labkit import ENV, CommandLineWatch, SteadyClient, lab_env, remote, run_smship, write_inventory
from motokit import CREDENTIALS, REGION, client, moto_server
from smship import secretkey
from smship.rotate.generations import key_fingerprint
from smship.secrets import read_file_backend

pytestmark = pytest.mark.lab

WEB = ("lab2", "lab3")
APP_HOSTS = ("lab1", "lab2", "lab3")
DOMAIN = "refapp.lab.test"
ENV_FILE = "/srv/refapp/shared/env"


class Rotation:
    """The lab inventory with its own copy of the secrets file."""

    def __init__(self, lab, root: Path):
        self.secrets = root / "secrets.env"
        shutil.copyfile(lab.secrets, self.secrets)
        self.secrets.chmod(0o600)
        self.inventory = write_inventory(lab, root / "project", self.use_copy)

    def use_copy(self, data: dict) -> None:
        lab_env(data)["secrets"] = {"backend": "file", "path": str(self.secrets)}

    def values(self) -> dict[str, str]:
        return read_file_backend(self.secrets)


@pytest.fixture(scope="module")
def rotation(lab, deployed, tmp_path_factory):
    yield Rotation(lab, tmp_path_factory.mktemp("rotation"))
    lab.restore()
    run_smship("rotate-secret", ENV, "--resume", inventory=lab.inventory, check=True)


def sign_in(lab, host: str, name: str) -> str:
    """A fresh session on one web host: its cookie value."""
    with httpx.Client(verify=False, timeout=30, headers={"Host": DOMAIN}) as client:
        response = client.post(f"https://{lab.address(host)}/session", json={"name": name})
        assert response.status_code == 200, response.text
        cookie = response.cookies.get("session")
        assert cookie
        return cookie


def session_name(lab, host: str, cookie: str) -> str | None:
    with httpx.Client(verify=False, timeout=30, headers={"Host": DOMAIN, "Cookie": f"session={cookie}"}) as client:
        response = client.get(f"https://{lab.address(host)}/session")
        assert response.status_code == 200, response.text
        return response.json()["name"]


def wait_serving(lab, host: str, timeout: float = 120) -> None:
    """Until a host that just booted answers /session through its nginx (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sign_in(lab, host, "probe")
            return
        except (httpx.HTTPError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def env_lines(lab, host: str) -> dict[str, str]:
    text = remote(lab, host, f"cat {ENV_FILE}")
    return dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line and not line.startswith("#"))


def changed_names(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def journal_since(lab, host: str, since: float) -> str:
    return remote(lab, host, f"journalctl --no-pager -o cat --since @{int(since) - 1}", timeout=120)


def shows(texts: list[str], *values: str) -> bool:
    return any(value in text for value in values for text in texts)


def test_rotation_invalidates_sessions_changes_only_the_key_and_never_shows_it(lab, rotation):
    old = rotation.values()["SM_SECRET_KEY"]
    cookies = {host: sign_in(lab, host, f"before-{host}") for host in WEB}
    assert all(session_name(lab, host, cookies[host]) == f"before-{host}" for host in WEB)
    files_before = {host: env_lines(lab, host) for host in APP_HOSTS}
    started = time.time()

    with CommandLineWatch(lab) as watch, SteadyClient(lab.address("lab1")) as client:
        time.sleep(1)
        run = run_smship("rotate-secret", ENV, inventory=rotation.inventory, check=True)
    # The same batches and health gates as a deploy: through the lb, nothing failed.
    assert client.total >= 50 and client.failures == [], client.summary()

    values = rotation.values()
    new = values["SM_SECRET_KEY"]
    kept = values["SM_SECRET_KEY_PREVIOUS"] == old and new != old
    assert kept, "the backend must hold a new key and keep the old one"
    assert "users must sign in again" in run.output, run
    fingerprint = key_fingerprint("SM_SECRET_KEY", new)
    assert f"every app host runs {fingerprint} (current key)" in run.output, run

    for host in WEB:
        assert session_name(lab, host, cookies[host]) is None, f"{host} still accepts a session from before"
        fresh = sign_in(lab, host, f"after-{host}")
        assert session_name(lab, host, fresh) == f"after-{host}"
    for host in APP_HOSTS:
        after = env_lines(lab, host)
        assert changed_names(files_before[host], after) == ["SM_SECRET_KEY"], host
        holds_new = after["SM_SECRET_KEY"] == new
        assert holds_new, f"{host}: the env file does not hold the new key"
        assert remote(lab, host, f"stat -c '%a %U' {ENV_FILE}").split() == ["600", "root"]

    # Neither value in smship's output, the hosts' journals, or any process list sampled during the run.
    assert len(watch.samples) >= 10, "too few process lists sampled to prove anything"
    assert not shows([run.stdout, run.stderr], old, new), "smship printed a key"
    # Command lines: neither key nor its fingerprint, nor any other secret of the backend.
    assert watch.shown([("SM_SECRET_KEY", old), ("SM_SECRET_KEY", new), *values.items()]) == [], \
        "a secret or its fingerprint appeared on a command line"
    assert not shows([journal_since(lab, host, started) for host in APP_HOSTS], old, new), "a key reached a journal"
    # The env file is written but never shown; provisioning now agrees with the hosts.
    check = run_smship("provision", ENV, "--check", "-o", "json", inventory=rotation.inventory, check=True)
    assert check.statuses() == {host: ["ok"] for host in APP_HOSTS}, check


def test_a_rotation_with_a_web_host_down_reports_the_split_and_resume_finishes_it(lab, rotation):
    cookie = sign_in(lab, "lab3", "before-split")
    lab.stop("lab3")
    try:
        run = run_smship("rotate-secret", ENV, "-o", "json", inventory=rotation.inventory, check=False)
    finally:
        lab.start("lab3")
    values = rotation.values()
    current = key_fingerprint("SM_SECRET_KEY", values["SM_SECRET_KEY"])
    previous = key_fingerprint("SM_SECRET_KEY", values["SM_SECRET_KEY_PREVIOUS"])
    generations = run.document["generations"]
    assert {h: g["current"] for h, g in generations.items()} == {"lab1": True, "lab2": True, "lab3": False}, run
    assert not generations["lab3"]["reachable"]
    assert "the fleet is split" in run.output and "lab3: unreachable" in run.output, run
    assert f"smship rotate-secret {ENV} --resume" in run.output, run

    # Back up, lab3 runs the key it had: the split is visible, and a new rotation is refused.
    lab.wait_ssh("lab3", timeout=90)
    wait_serving(lab, "lab3")
    assert session_name(lab, "lab3", cookie) == "before-split"
    refused = run_smship("rotate-secret", ENV, inventory=rotation.inventory, check=False)
    assert f"lab3 runs {previous} (previous key)" in refused.output and "nothing was changed" in refused.output, refused
    unchanged = rotation.values() == values
    assert unchanged, "a refused rotation changed the backend"

    resumed = run_smship("rotate-secret", ENV, "--resume", "-o", "json", inventory=rotation.inventory, check=True)
    assert all(g["current"] for g in resumed.document["generations"].values()), resumed
    rewritten = [r["host"] for r in resumed.document["hosts"] if r["message"].startswith(ENV_FILE)]
    assert rewritten == ["lab3"], resumed          # only the host left behind
    unchanged = rotation.values() == values
    assert unchanged, "--resume must not generate a key"
    assert session_name(lab, "lab3", cookie) is None
    assert session_name(lab, "lab2", sign_in(lab, "lab2", "after")) == "after"
    assert f"every app host runs {current} (current key)" in resumed.output


def test_undo_puts_the_previous_key_back_everywhere_and_its_sessions_verify_again(lab, rotation):
    wait_serving(lab, "lab3")
    old_cookie = sign_in(lab, "lab2", "old")
    run_smship("rotate-secret", ENV, inventory=rotation.inventory, check=True)
    assert session_name(lab, "lab2", old_cookie) is None
    new_cookie = sign_in(lab, "lab2", "new")
    values = rotation.values()

    run = run_smship("rotate-secret", ENV, "--undo", "-o", "json", inventory=rotation.inventory, check=True)
    after = rotation.values()
    swapped = (after["SM_SECRET_KEY"] == values["SM_SECRET_KEY_PREVIOUS"]
               and after["SM_SECRET_KEY_PREVIOUS"] == values["SM_SECRET_KEY"])
    assert swapped, "undo must swap the current and the previous key in the backend"
    assert all(g["current"] for g in run.document["generations"].values()), run
    assert "sessions from before it verify again" in run.output, run
    # One key across the fleet again: the old session verifies on both web hosts, the newer one nowhere.
    for host in WEB:
        assert session_name(lab, host, old_cookie) == "old", host
        assert session_name(lab, host, new_cookie) is None, host


def test_rotation_with_the_secrets_in_ssm_keeps_the_previous_parameter_version(lab, rotation, tmp_path):
    """The AWS backend end to end: smship (this machine) reads SSM on loopback, the hosts get the key."""
    values = {k: v for k, v in rotation.values().items() if not k.endswith("_PREVIOUS")}
    with moto_server(tmp_path) as endpoint:
        ssm = client(endpoint, "ssm")
        for name, value in values.items():
            ssm.put_parameter(Name=f"/refapp/lab/{name}", Value=value, Type="SecureString")
        inventory = write_inventory(lab, tmp_path / "project", lambda data: lab_env(data).__setitem__(
            "secrets", {"backend": "aws-ssm", "prefix": "/refapp/lab/", "region": REGION, "endpoint_url": endpoint}))
        old_cookie = sign_in(lab, "lab2", "ssm-old")
        run = run_smship("rotate-secret", ENV, inventory=inventory, env=CREDENTIALS, check=True)
        history = ssm.get_parameter_history(Name="/refapp/lab/SM_SECRET_KEY", WithDecryption=True)["Parameters"]
    versions = [p["Value"] for p in sorted(history, key=lambda p: p["Version"])]
    kept = len(versions) == 2 and versions[0] == values["SM_SECRET_KEY"] and versions[1] != versions[0]
    assert kept, "SSM must hold the new key as the newest version and the old one before it"
    assert "the parameter's previous version" in run.output, run
    assert f"every app host runs {key_fingerprint('SM_SECRET_KEY', versions[1])} (current key)" in run.output, run
    assert not shows([run.stdout, run.stderr], *versions), "smship printed a key"
    assert session_name(lab, "lab2", old_cookie) is None
    assert session_name(lab, "lab3", sign_in(lab, "lab3", "ssm-new")) == "ssm-new"
    # Back to the key of the secrets file the other tests use.
    run_smship("rotate-secret", ENV, "--resume", inventory=rotation.inventory, check=True)


def test_with_the_env_backend_rotation_is_refused_and_resume_rolls_out_the_ci_value(lab, rotation, tmp_path):
    """CI keeps the secrets: smship cannot store a key there, but rolls out the one CI now has."""
    values = {k: v for k, v in rotation.values().items() if not k.endswith("_PREVIOUS")}
    ci_key = secretkey.generate()
    inventory = write_inventory(lab, tmp_path / "project",
                                lambda data: lab_env(data).__setitem__("secrets", {"backend": "env"}))
    ci = {**values, "SM_SECRET_KEY": ci_key, "SM_SECRET_KEY_PREVIOUS": values["SM_SECRET_KEY"]}

    refused = run_smship("rotate-secret", ENV, inventory=inventory, env=ci, check=False)
    assert "CI secret store" in refused.output and "preflight" not in refused.output, refused

    run = run_smship("rotate-secret", ENV, "--resume", inventory=inventory, env=ci, check=True)
    assert f"every app host runs {key_fingerprint('SM_SECRET_KEY', ci_key)} (current key)" in run.output, run
    assert not shows([run.stdout, run.stderr], ci_key, values["SM_SECRET_KEY"]), "smship printed a key"
    assert session_name(lab, "lab2", sign_in(lab, "lab2", "ci")) == "ci"
    # Back to the key of the secrets file the other tests use.
    run_smship("rotate-secret", ENV, "--resume", inventory=rotation.inventory, check=True)
