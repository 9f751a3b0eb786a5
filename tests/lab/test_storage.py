"""`smship storage setup|verify` against a real S3-compatible server (moto behind nginx TLS).

The lab: lab1 = [db, lb, beat], lab2 and lab3 = [web, worker].  The server
listens on the lab bridge's own address; the app hosts reach it over HTTPS
with the test CA, shipped by smship as storage.ca_file.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from labkit import ENV, lab_env, remote, write_inventory
from s3kit import secrets_with_keys

pytestmark = pytest.mark.lab

BUCKET = "refapp-uploads"
APP_HOSTS = ("lab1", "lab2", "lab3")


def storage_inventory(lab, s3_server, directory: Path, bucket: str = BUCKET) -> Path:
    secrets = secrets_with_keys(Path(lab.secrets), directory)

    def add_storage(data: dict) -> None:
        env = lab_env(data)
        env["secrets"] = {"backend": "file", "path": str(secrets)}
        env["storage"] = {"bucket": bucket, "region": "us-east-1", "endpoint_url": s3_server.endpoint_by_address,
                          "ca_file": str(s3_server.ca_file), "noncurrent_days": 30}
        env["health"] = {"timeout": 45}

    return write_inventory(lab, directory, add_storage)


@pytest.fixture(scope="module")
def on_s3(lab, deployed, s3_server, smship, tmp_path_factory):
    """The deployed app switched to the bucket by `storage setup` (its inventory and first run)."""
    inventory = storage_inventory(lab, s3_server, tmp_path_factory.mktemp("storage"))
    began = time.monotonic()
    run = smship("storage", "setup", ENV, "-o", "json", inventory=inventory, check=True)
    return inventory, run, time.monotonic() - began


def upload(lab, payload: bytes) -> dict:
    with httpx.Client(verify=False, timeout=30, headers={"Host": "refapp.lab.test"}) as client:
        response = client.post(f"https://{lab.address('lab1')}/uploads",
                               files={"file": ("hello.txt", payload, "text/plain")})
    assert response.status_code == 201, response.text
    return response.json()


def download(lab, key: str) -> httpx.Response:
    with httpx.Client(verify=False, timeout=30, headers={"Host": "refapp.lab.test"}) as client:
        return client.get(f"https://{lab.address('lab1')}/uploads/{key}")


def test_storage_setup_makes_the_bucket_and_switches_every_app_host(lab, on_s3, s3_server):
    inventory, run, seconds = on_s3
    statuses = run.statuses()
    assert statuses["bucket"] == ["changed"], run
    for host in APP_HOSTS:
        assert "changed" in statuses[host], run
    client = s3_server.client()
    assert client.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    block = client.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4, block
    rules = client.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]
    assert [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in rules] == [30], rules
    for host in APP_HOSTS:
        env_file = remote(lab, host, "cat /srv/refapp/shared/env")
        assert "SM_FILE_STORAGE_BACKEND=s3" in env_file
        assert f"SM_S3_BUCKET={BUCKET}" in env_file
        assert f"SM_S3_ENDPOINT_URL={s3_server.endpoint_by_address}" in env_file
        assert "AWS_CA_BUNDLE=/srv/refapp/shared/storage-ca.crt" in env_file
    # The restart went through the health gate: every web host serves and is healthy on S3.
    for host in ("lab2", "lab3"):
        ready = remote(lab, host, "curl -sk -H 'Host: refapp.lab.test' https://127.0.0.1/health/ready")
        assert '"file_storage":{"status":"healthy"' in ready.replace(" ", ""), ready
    print(f"storage setup: {seconds:.1f}s")


def test_storage_setup_twice_changes_nothing(on_s3, smship):
    inventory, _, _ = on_s3
    run = smship("storage", "setup", ENV, "-o", "json", inventory=inventory, check=True)
    assert set(status for s in run.statuses().values() for status in s) == {"ok"}, run
    assert "no running app needs a restart" in run.output


def test_storage_verify_round_trips_from_each_app_host(on_s3, smship):
    inventory, _, _ = on_s3
    run = smship("storage", "verify", ENV, "-o", "json", inventory=inventory, check=True)
    for host in APP_HOSTS:
        assert run.statuses()[host] == ["ok"], run
    assert run.stderr.count("wrote, read back and deleted s3://refapp-uploads/smship-verify/") == 3, run


def test_an_upload_lands_in_the_bucket_and_survives_a_redeploy(lab, on_s3, s3_server, smship):
    inventory, _, _ = on_s3
    payload = b"uploaded through the reference app \x00\x01" + str(time.time()).encode()
    answer = upload(lab, payload)
    assert answer["backend"] == "s3", answer
    stored = s3_server.client().get_object(Bucket=BUCKET, Key=answer["key"])["Body"].read()
    assert stored == payload
    # Nothing of it on the hosts' disks: the filesystem backend is out of the picture.
    for host in ("lab2", "lab3"):
        assert remote(lab, host, f"ls /srv/refapp/shared/uploads/ | grep -c {answer['key']} || true").strip() == "0"

    smship("deploy", ENV, "--force", inventory=inventory, check=True)
    for host in APP_HOSTS:
        assert "SM_FILE_STORAGE_BACKEND=s3" in remote(lab, host, "cat /srv/refapp/shared/env")
    response = download(lab, answer["key"])
    assert response.status_code == 200 and response.content == payload
    again = upload(lab, b"after the redeploy")
    assert again["backend"] == "s3"
    assert s3_server.client().get_object(Bucket=BUCKET, Key=again["key"])["Body"].read() == b"after the redeploy"


def test_storage_setup_with_an_unreachable_endpoint_fails_in_one_line(lab, on_s3, s3_server, smship, tmp_path):
    def dead_endpoint(data: dict) -> None:
        lab_env(data)["storage"]["endpoint_url"] = f"https://{s3_server.address}:1"

    import yaml
    inventory = on_s3[0]
    data = yaml.safe_load(inventory.read_text())
    dead_endpoint(data)
    path = tmp_path / "smship.yml"
    path.write_text(yaml.safe_dump(data))
    began = time.monotonic()
    run = smship("storage", "setup", ENV, inventory=path, check=False)
    assert time.monotonic() - began < 60, run
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"https://{s3_server.address}:1: cannot connect" in errors[0], run


def test_storage_verify_names_a_missing_bucket_on_the_host_that_has_it(lab, on_s3, smship, tmp_path):
    """lab2's env file names a bucket that does not exist (a typo provisioned there); verify says so in one line."""
    import yaml

    inventory = on_s3[0]
    data = yaml.safe_load(inventory.read_text())
    lab_env(data)["storage"]["bucket"] = "refapp-no-such-bucket"
    lab_env(data)["health"] = {"timeout": 10}
    typo = tmp_path / "smship.yml"
    typo.write_text(yaml.safe_dump(data))
    # The env file is written; the web slot started on it answers degraded, so it never takes over.
    typed = smship("provision", ENV, "--limit", "lab2", inventory=typo, check=False)
    assert "status 'degraded'; the old process (slot" in typed.output, typed
    try:
        run = smship("storage", "verify", ENV, "-o", "json", inventory=inventory, check=False)
        assert run.statuses() == {"lab1": ["ok"], "lab2": ["failed"], "lab3": ["ok"]}, run
        lab2 = [line for line in run.stderr.splitlines() if line.strip().startswith("lab2")]
        assert len(lab2) == 1 and "NoSuchBucket" in lab2[0] and "refapp-no-such-bucket" in lab2[0], run
    finally:
        smship("storage", "setup", ENV, inventory=inventory, check=True)
        # The web restart the typo's provision still owes lab2, on the right bucket now.
        smship("provision", ENV, "--limit", "lab2", inventory=inventory, check=True)
    assert "SM_S3_BUCKET=refapp-uploads" in remote(lab, "lab2", "cat /srv/refapp/shared/env")
