import os
import sys

import pytest

from refapp_testlib import free_port, port_open, wait_until

BUCKET = "refapp-uploads"


def _round_trip(client, payload: bytes, backend: str) -> str:
    resp = client.post("/uploads", files={"file": ("hello.txt", payload, "text/plain")})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["backend"] == backend and body["size"] == len(payload)
    got = client.get(f"/uploads/{body['key']}")
    assert got.status_code == 200
    assert got.content == payload
    assert got.headers["content-type"].startswith("text/plain")
    return body["key"]


def test_filesystem_upload_round_trip(make_settings, client_for, tmp_path):
    root = tmp_path / "files"
    with client_for(make_settings(SM_FILE_STORAGE_PATH=str(root))) as client:
        key = _round_trip(client, b"filesystem bytes \x00\x01", "filesystem")
        assert (root / key).read_bytes() == b"filesystem bytes \x00\x01"
        assert client.get("/uploads/" + "0" * 32).status_code == 404
        assert client.get("/uploads/..%2F..%2Fetc%2Fpasswd").status_code == 404


@pytest.fixture
def moto_s3(spawn, monkeypatch):
    """moto's S3 server on 127.0.0.1 with one bucket."""
    port = free_port()
    proc, log = spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], dict(os.environ), "moto")
    wait_until(lambda: proc.poll() is None and port_open(port), 30, what="moto_server")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import boto3

    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    return endpoint, proc


def test_s3_upload_round_trip(make_settings, client_for, moto_s3):
    endpoint, _ = moto_s3
    settings = make_settings(
        SM_FILE_STORAGE_BACKEND="s3", SM_S3_BUCKET=BUCKET, SM_S3_REGION="us-east-1", SM_S3_ENDPOINT_URL=endpoint
    )
    with client_for(settings) as client:
        key = _round_trip(client, b"s3 bytes", "s3")
        assert client.get("/health/ready").json()["checks"]["file_storage"]["status"] == "healthy"
    import boto3

    obj = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint).get_object(Bucket=BUCKET, Key=key)
    assert obj["Body"].read() == b"s3 bytes"


def test_s3_unreachable_is_degraded(make_settings, client_for, moto_s3):
    endpoint, proc = moto_s3
    settings = make_settings(
        SM_FILE_STORAGE_BACKEND="s3", SM_S3_BUCKET="no-such-bucket", SM_S3_ENDPOINT_URL=endpoint
    )
    with client_for(settings) as client:
        body = client.get("/health/ready").json()
        assert body["status"] == "degraded", body
        assert body["checks"]["file_storage"]["status"] == "degraded"
