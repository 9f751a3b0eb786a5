"""What the app user cannot reach on a host, against the lab's real hosts.

Root never writes through the app user's links; the deploy lock also holds
off a provision; secret values with a space and ``#`` survive redis.conf;
every unit smship creates, transient ones included, scores "OK" or better in
``systemd-analyze security``; and no secret value nor its fingerprint ever
shows in a process's command line on the hosts or on this machine.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import time

import pytest

from labkit import (APP_HOSTS, APP_ROOT, ENV, WEB, CommandLineWatch, lab_env, remote, web_unit, worker_unit,
                    write_inventory)
from smship.layout import Layout
from smship.secrets import read_file_backend
from smship.steps.migrate import transient_unit_properties
from smship.templating import environment

pytestmark = pytest.mark.lab

LAYOUT = Layout(app="refapp", user="refapp", root=APP_ROOT)
# systemd-analyze security's bands from "OK" up (exposure below 5.0).
GOOD_ENOUGH = ("OK", "SAFE", "PERFECT")


def wait_ready(lab, hosts=WEB, timeout: float = 120) -> None:
    """Each web host's app answers /health/ready "healthy" (it reached Postgres and Redis)."""
    for host in hosts:
        deadline, answer = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            answer = lab.ssh(host, ["curl", "-sk", "-H", "Host: refapp.lab.test",
                                    "https://127.0.0.1/health/ready"], timeout=30).stdout
            answer = answer.decode() if isinstance(answer, bytes) else answer
            try:
                if json.loads(answer).get("status") == "healthy":
                    break
            except ValueError:
                pass
            time.sleep(1)
        else:
            raise AssertionError(f"{host}: not ready within {timeout}s: {answer[:300]}")


def exposure(lab, host: str, unit: str) -> tuple[float, str]:
    report = remote(lab, host, f"systemd-analyze security --no-pager {shlex.quote(unit)}")
    score = re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+) (\w+)", report)
    assert score, report
    return float(score.group(1)), score.group(2)


def test_a_linked_deploy_log_changes_nothing_outside_shared_and_deploys_show_no_secret(lab, smship, deployed):
    """The app user links the old log place to a file of root's; a deploy writes root's own log instead."""
    victim = "/etc/smship-victim.conf"
    for host in WEB:
        remote(lab, host, f"printf 'root only\\n' > {victim} && chmod 600 {victim}")
        remote(lab, host, f"runuser -u refapp -- ln -sfn {victim} {APP_ROOT}/shared/logs/deploys.jsonl")
    secrets = read_file_backend(lab.secrets)
    with CommandLineWatch(lab) as watch:
        smship("deploy", ENV, "-o", "json", "--force", check=True)      # a real roll, live release or not
    for host in WEB:
        assert remote(lab, host, f"cat {victim}") == "root only\n", host
        last = json.loads(remote(lab, host, f"tail -n1 {LAYOUT.audit_log}"))
        assert last["result"] == "ok"
        assert remote(lab, host, f"stat -c '%U %a' {LAYOUT.audit_log} {APP_ROOT}").split() == \
            ["root", "640", "root", "755"]
        remote(lab, host, f"rm -f {victim} {APP_ROOT}/shared/logs/deploys.jsonl")
    assert watch.shown(secrets) == []


def test_provision_waits_for_the_deploy_lock(lab, smship, deployed, tmp_path):
    holder = {"token": "t" * 32, "user": "someone", "machine": "elsewhere.example", "pid": 4242,
              "boot_id": "b" * 32, "since": time.time(), "command": "deploy lab"}
    lock = f"{APP_ROOT}/shared/deploy.lock"
    encoded = base64.b64encode(json.dumps(holder).encode()).decode()

    def one_more_setting(data: dict) -> None:
        lab_env(data)["env"]["LOCK_TEST_MARK"] = "1"

    changed = write_inventory(lab, tmp_path / "project", one_more_setting)
    remote(lab, "lab3", f"mkdir -m 700 {lock} && echo {encoded} | base64 -d > {lock}/holder.json")
    try:
        # A fleet in its desired state: provision only looks, which needs no lock.
        looked = smship("provision", ENV, "-o", "json", check=True)
        assert looked.statuses() == {h.name: ["ok"] for h in lab.hosts}, looked
        # A change to make (the env files): it waits for the deploy, and changes nothing.
        refused = smship("provision", ENV, inventory=changed, check=False)
        assert "LOCK_TEST_MARK" not in remote(lab, "lab2", f"cat {APP_ROOT}/shared/env")
        assert refused.returncode != 0
        assert "lab3: another deploy holds the lock: someone@elsewhere.example (deploy lab" in refused.output, refused
    finally:
        remote(lab, "lab3", f"rm -rf {lock}")
    # Every other host's piece of the lock was given back.
    for host in APP_HOSTS:
        assert remote(lab, host, f"test -e {lock} && echo held || echo free").strip() == "free", host


def test_a_redis_password_with_a_space_and_a_hash_works_and_provision_shows_no_secret(lab, smship, deployed,
                                                                                     tmp_path):
    secrets_copy = tmp_path / "secrets.env"
    values = read_file_backend(lab.secrets)
    values["SM_REDIS_PASSWORD"] = "two words # not a comment " + values["SM_REDIS_PASSWORD"][:8]
    secrets_copy.write_text("".join(f'{name}="{value}"\n' for name, value in values.items()))
    secrets_copy.chmod(0o600)

    def use_copy(data: dict) -> None:
        lab_env(data)["secrets"] = {"backend": "file", "path": str(secrets_copy)}

    inventory = write_inventory(lab, tmp_path / "project", use_copy)
    try:
        with CommandLineWatch(lab) as watch:
            smship("provision", ENV, "-o", "json", inventory=inventory, check=True)
        wait_ready(lab)
        conf = remote(lab, "lab1", "grep '^requirepass ' /etc/redis/redis.conf")
        assert conf.strip() == f'requirepass "{values["SM_REDIS_PASSWORD"]}"'
        assert remote(lab, "lab1", "systemctl is-active redis-server").strip() == "active"
        assert watch.shown(values) == []
    finally:
        smship("provision", ENV, "-o", "json", check=True)
        wait_ready(lab)


def test_every_unit_smship_creates_scores_ok_or_better(lab, deployed):
    units = {"lab1": ["refapp-beat.service"], "lab2": [web_unit(lab, "lab2"), worker_unit(lab, "lab2")],
             "lab3": [web_unit(lab, "lab3"), worker_unit(lab, "lab3")]}
    for host, names in units.items():
        for unit in names:
            score, band = exposure(lab, host, unit)
            assert band in GOOD_ENOUGH and score < 5.0, (host, unit, score, band)

    # A transient unit exactly as migrations, release commands and probes get it.
    probe = "refapp-sandbox-probe.service"
    properties = [word for p in transient_unit_properties(LAYOUT, LAYOUT.current) for word in ("-p", p)]
    remote(lab, "lab2", shlex.join(["systemd-run", f"--unit={probe}", "--collect", "--service-type=exec",
                                    *properties, "/bin/sleep", "120"]))
    try:
        score, band = exposure(lab, "lab2", probe)
        assert band in GOOD_ENOUGH and score < 5.0, (probe, score, band)
        assert remote(lab, "lab2", f"systemctl show -p User --value {probe}").strip() == "refapp"
    finally:
        remote(lab, "lab2", f"systemctl stop {probe} || true")

    # The backup service (the lab has no backup section: its unit, installed for the analysis only).
    unit = "refapp-backup.service"
    text = environment(None).get_template("backup.service.j2").render(app={"name": "refapp"},
                                                                      backup={"stanza": "refapp"})
    path = f"/etc/systemd/system/{unit}"
    encoded = base64.b64encode(text.encode()).decode()
    remote(lab, "lab1", f"echo {encoded} | base64 -d > {path} && systemctl daemon-reload")
    try:
        score, band = exposure(lab, "lab1", unit)
        assert band in GOOD_ENOUGH and score < 5.0, (unit, score, band)
    finally:
        remote(lab, "lab1", f"rm -f {path} && systemctl daemon-reload")


def test_the_env_file_is_roots_and_the_app_cannot_change_it(lab, deployed):
    for host in APP_HOSTS:
        assert remote(lab, host, f"stat -c '%U %a' {LAYOUT.env_file}").split() == ["root", "600"], host
        tried = lab.ssh(host, ["sudo", "runuser", "-u", "refapp", "--", "sh", "-c",
                               f"echo EVIL=1 >> {LAYOUT.env_file}"], timeout=30)
        assert tried.returncode != 0, host
