"""A second app, deployed with nothing but the inventory `smship init` writes for it.

examples/taskboard is shaped unlike the reference app (a uv-workspace monorepo,
its own ASGI and Celery paths, plain setting names, a plain-text health answer,
tokens signed with SECRET_KEY, a seeding release command). The test runs
`smship init` on it, fills in only what init leaves to the user — the fleet's
hosts, domain, TLS and secrets file, taken from a lab of its own — and deploys
it: nothing else of the inventory is touched, and nothing in smship knows the app.

Its fleet is a second lab booted by this module on its own bridge and subnet
(SMSHIP_TEST_LAB2_DIR / _BRIDGE / _SUBNET, derived from the session lab's by
default): lab1 = [lb], lab2 and lab3 = [web], lab4 = [worker, beat, db].
"""

from __future__ import annotations

import ipaddress
import os
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import yaml

from labkit import SteadyClient, checkout_app, fill_in, git, init_inventory, remote, run_smship, write_secrets

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
TASKBOARD = ROOT / "examples" / "taskboard"
from labkit import INIT_ENV as ENV  # the environment init writes
DOMAIN = "taskboard.lab.test"
ROLES = {"lab1": ["lb"], "lab2": ["web"], "lab3": ["web"], "lab4": ["worker", "beat", "db"]}
WEB = ("lab2", "lab3")


def _session_lab():
    """tests/conftest.py, where the session lab's settings are (``conftest`` here is tests/lab's)."""
    import importlib.util
    import sys

    name = "smship_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "conftest.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _second_network() -> tuple[str, str, str]:
    """The second lab's directory, bridge and subnet: given, or derived from the session lab's."""
    session = _session_lab()
    LAB_BRIDGE, LAB_DIR, LAB_SUBNET = session.LAB_BRIDGE, session.LAB_DIR, session.LAB_SUBNET
    subnet = ipaddress.ip_network(LAB_SUBNET)
    flipped = ipaddress.ip_network((int(subnet.network_address) ^ (128 << 8), subnet.prefixlen))
    return (os.environ.get("SMSHIP_TEST_LAB2_DIR", LAB_DIR.rstrip("/") + "-second"),
            os.environ.get("SMSHIP_TEST_LAB2_BRIDGE", LAB_BRIDGE[:12] + "2nd"),
            os.environ.get("SMSHIP_TEST_LAB2_SUBNET", str(flipped)))


@pytest.fixture(scope="module")
def fleet():
    """Four hosts of a lab of the module's own, removed at the end (also on failure)."""
    from smship.lab import Lab

    session = _session_lab()
    session.require_lab_platform()
    directory, bridge, subnet = _second_network()
    second = Lab(directory, bridge=bridge, subnet=subnet)
    try:
        second.up(hosts=len(ROLES), image_name=session.LAB_IMAGE, app=TASKBOARD)
        yield second
    finally:
        second.down()
        assert not second.residue(), second.residue()


class Board:
    """The deployed taskboard, through the lb or one web host."""

    def __init__(self, lab, host: str = "lab1"):
        self.client = httpx.Client(base_url=f"https://{lab_address(lab, host)}", verify=False, timeout=30,
                                   headers={"Host": DOMAIN})

    def login(self, password: str) -> str:
        response = self.client.post("/login", json={"username": "admin", "password": password})
        assert response.status_code == 200, response.text
        return response.json()["token"]

    def me(self, token: str) -> int:
        return self.client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code

    def ticks(self) -> int:
        return self.client.get("/ticks").json()["count"]


def lab_address(lab, host: str) -> str:
    return dict(lab.hosts)[host]


def steady(lab, stack, password: str) -> list[SteadyClient]:
    """Through the lb and straight at lab2's own nginx, a GET each, and logins through the lb."""
    return [stack.enter_context(SteadyClient(lab_address(lab, "lab1"), path="/tasks", host=DOMAIN)),
            stack.enter_context(SteadyClient(lab_address(lab, "lab2"), path="/tasks", host=DOMAIN)),
            stack.enter_context(SteadyClient(lab_address(lab, "lab1"), path="/login", host=DOMAIN,
                                             interval=0.25, post={"username": "admin", "password": password}))]


def no_failed_request(clients: list[SteadyClient]) -> None:
    for client in clients:
        # Each ran through the command: from a second before it, one request per interval (0.25 s at most).
        assert client.total >= 10, client.summary()
        assert not client.failures, client.summary()


def until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_the_taskboard_deploys_from_its_init_inventory_with_no_failed_request(fleet, tmp_path):
    app = checkout_app(tmp_path / "taskboard", TASKBOARD)
    project = tmp_path / "project"
    project.mkdir()
    written = init_inventory(app, project / "smship.yml")
    data = yaml.safe_load(written)
    names = [data["app"]["settings"]["secret_key"], *data["app"]["settings"]["secrets"],
             "SM_DB_PASSWORD", "SM_REDIS_PASSWORD"]
    assert names[:2] == ["SECRET_KEY", "ADMIN_PASSWORD"], names
    secrets_file = tmp_path / "secrets.env"
    write_secrets(secrets_file, fleet.secrets, names)
    inventory = project / "smship.yml"
    inventory.write_text(fill_in(written, fleet.inventory, secrets_file, DOMAIN, ROLES))
    timings: list[str] = []

    def smship(*argv: str, **kwargs):
        began = time.monotonic()
        try:
            return run_smship(*argv, inventory=inventory, **kwargs)
        finally:
            # Printed with the test's output (pytest -rP): where this test's minutes go.
            timings.append(f"smship {argv[0]}: {time.monotonic() - began:.0f} s")
            print(timings[-1])

    smship("provision", ENV, check=True)
    first = smship("deploy", ENV, "-o", "json", check=True)
    from smship.secrets import read_file_backend
    password = read_file_backend(secrets_file)["ADMIN_PASSWORD"]

    board = Board(fleet)
    health = board.client.get("/healthz/")
    assert (health.status_code, health.text) == (200, "true")
    for host in WEB:
        answer = remote(fleet, host, f"curl -sk -H 'Host: {DOMAIN}' https://127.0.0.1/healthz/")
        assert answer == "true", (host, answer)
    # The migration ran once, the seeding release command made the first user.
    assert remote(fleet, "lab4", "runuser -u postgres -- psql -tAc 'SELECT version_num FROM alembic_version' "
                                  "taskboard").strip() == "0001"
    token = board.login(password)
    assert board.me(token) == 200 and board.me("admin.1.forged") == 401
    # The front end, built with its API URL from the environment's domain, served by nginx.
    page = board.client.get("/frontend/")
    assert page.status_code == 200 and "<title>taskboard</title>" in page.text, page.text[:300]
    script = page.text.split('src="')[1].split('"')[0]
    assert f'"https://{DOMAIN}"' in board.client.get(f"/frontend/{script}").text
    # A Celery round trip, and beat's ticks.
    job = board.client.post("/jobs/add", json={"a": 20, "b": 22}).json()["id"]
    until(lambda: board.client.get(f"/jobs/{job}").json()["result"] == 42, 60, "the worker to add 20 and 22")
    seen = board.ticks()
    until(lambda: board.ticks() > seen, 30, "beat's next tick")
    # The settings arrived under the app's own names.
    env_file = remote(fleet, "lab2", "cat /srv/taskboard/shared/env")
    assert "DATABASE_URL=postgresql+psycopg://" in env_file and "CELERY_BROKER_URL=redis" in env_file
    assert "SM_DATABASE_URL" not in env_file

    # A new release, rolled under steady load.
    (app / "backend" / "taskboard" / "marker.py").write_text("MARK = 1\n")
    git(app, "add", "-A")
    git(app, "commit", "-q", "-m", "next")
    with ExitStack() as stack:
        clients = steady(fleet, stack, password)
        time.sleep(1)
        second = smship("deploy", ENV, "-o", "json", check=True)
    no_failed_request(clients)
    assert second.document["audit"]["release"] != first.document["audit"]["release"]

    with ExitStack() as stack:
        clients = steady(fleet, stack, password)
        time.sleep(1)
        smship("rollback", ENV, check=True)
    no_failed_request(clients)
    live = remote(fleet, "lab2", "basename \"$(readlink /srv/taskboard/current)\"").strip()
    assert live == first.document["audit"]["release"]

    old_key = read_file_backend(secrets_file)["SECRET_KEY"]
    with ExitStack() as stack:
        clients = steady(fleet, stack, password)
        time.sleep(1)
        smship("rotate-secret", ENV, check=True)
    no_failed_request(clients)
    rotated = read_file_backend(secrets_file)["SECRET_KEY"] != old_key
    assert rotated, "the secrets file holds the same SECRET_KEY"
    for host in ("lab1", *WEB):
        assert Board(fleet, host).me(token) == 401, f"{host} still accepts a token signed with the old key"
    assert board.me(board.login(password)) == 200

    check = smship("check", ENV, check=True)
    assert "FAIL" not in check.output, check
