"""The AWS secrets backends against moto's server on 127.0.0.1 (SSM and Secrets Manager, over HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smship import secretkey
from smship.errors import SmshipError
from smship.inventory import InventoryError, Secrets, load
from smship.secrets import backend_for

from motokit import CREDENTIALS, client, moto_server
from netkit import free_port

ROOT = Path(__file__).resolve().parents[2]
OLD, NEW = secretkey.generate(), secretkey.generate()


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """moto's server on loopback; boto3 in this process uses credentials only it accepts."""
    with pytest.MonkeyPatch.context() as patch, moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        for key, value in CREDENTIALS.items():
            patch.setenv(key, value)
        yield endpoint


def test_ssm_reads_secure_strings_under_the_prefix_and_rotation_keeps_the_previous_version(aws):
    ssm = client(aws, "ssm")
    ssm.put_parameter(Name="/shop/prod/SM_SECRET_KEY", Value=OLD, Type="SecureString")
    ssm.put_parameter(Name="/shop/prod/SM_DB_PASSWORD", Value="db-pw", Type="SecureString")
    ssm.put_parameter(Name="/shop/prodother/SM_SECRET_KEY", Value="elsewhere", Type="SecureString")
    backend = backend_for(Secrets(backend="aws-ssm", prefix="/shop/prod/", region="eu-west-1", endpoint_url=aws))
    assert backend.read() == {"SM_SECRET_KEY": OLD, "SM_DB_PASSWORD": "db-pw"}
    assert backend.previous("SM_SECRET_KEY") is None
    backend.check_writable("SM_SECRET_KEY")
    backend.store("SM_SECRET_KEY", NEW)
    assert backend.read()["SM_SECRET_KEY"] == NEW and backend.previous("SM_SECRET_KEY") == OLD
    stored = ssm.get_parameter(Name="/shop/prod/SM_SECRET_KEY")["Parameter"]
    assert stored["Type"] == "SecureString" and stored["Version"] == 2
    backend.store("SM_SECRET_KEY", OLD)          # what --undo does: the previous value back
    assert backend.read()["SM_SECRET_KEY"] == OLD and backend.previous("SM_SECRET_KEY") == NEW


def test_secrets_manager_keeps_the_replaced_version_as_awsprevious(aws):
    sm = client(aws, "secretsmanager")
    sm.create_secret(Name="shop/prod", SecretString=json.dumps({"SM_SECRET_KEY": OLD, "SM_DB_PASSWORD": "db-pw"}))
    backend = backend_for(Secrets(backend="aws-secretsmanager", secret_id="shop/prod", region="eu-west-1",
                                  endpoint_url=aws))
    assert backend.read() == {"SM_SECRET_KEY": OLD, "SM_DB_PASSWORD": "db-pw"}
    assert backend.previous("SM_SECRET_KEY") is None
    backend.store("SM_SECRET_KEY", NEW)
    assert backend.read() == {"SM_SECRET_KEY": NEW, "SM_DB_PASSWORD": "db-pw"}
    assert backend.previous("SM_SECRET_KEY") == OLD
    previous = json.loads(sm.get_secret_value(SecretId="shop/prod", VersionStage="AWSPREVIOUS")["SecretString"])
    assert previous["SM_SECRET_KEY"] == OLD


def test_a_secret_that_is_not_a_json_object_or_missing_is_named_in_the_error(aws):
    client(aws, "secretsmanager").create_secret(Name="shop/plain", SecretString="just-a-string")
    plain = backend_for(Secrets(backend="aws-secretsmanager", secret_id="shop/plain", region="eu-west-1",
                                endpoint_url=aws))
    with pytest.raises(SmshipError, match="Secrets Manager secret shop/plain .*JSON object"):
        plain.read()
    missing = backend_for(Secrets(backend="aws-secretsmanager", secret_id="shop/none", region="eu-west-1",
                                  endpoint_url=aws))
    with pytest.raises(SmshipError, match="Secrets Manager secret shop/none: ResourceNotFoundException"):
        missing.read()


def test_an_unreachable_endpoint_fails_with_one_line_naming_the_backend(aws):
    port = free_port()   # nothing listens there
    backend = backend_for(Secrets(backend="aws-ssm", prefix="/shop/prod/", region="eu-west-1",
                                  endpoint_url=f"http://127.0.0.1:{port}"))
    backend.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(SmshipError, match=r"SSM parameters under /shop/prod/: Could not connect"):
        backend.read()


def inventory(tmp_path: Path, secrets: dict) -> Path:
    data = yaml.safe_load((ROOT / "inventory.example").read_text())
    data["environments"]["prod"]["secrets"] = secrets
    path = tmp_path / "smship.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_inventory_names_what_an_aws_backend_lacks(tmp_path):
    with pytest.raises(InventoryError, match=r"secrets.prefix: required when backend is 'aws-ssm'"):
        load(inventory(tmp_path, {"backend": "aws-ssm"}))
    with pytest.raises(InventoryError, match=r"secrets.prefix: .*must be a parameter path"):
        load(inventory(tmp_path, {"backend": "aws-ssm", "prefix": "shop/prod"}))
    with pytest.raises(InventoryError, match=r"secrets.path: only for backend 'file'"):
        load(inventory(tmp_path, {"backend": "aws-secretsmanager", "secret_id": "x", "path": "/tmp/x"}))


def test_deploy_refuses_a_weak_key_kept_in_ssm_naming_the_parameters(aws, tmp_path):
    client(aws, "ssm").put_parameter(Name="/weak/prod/SM_SECRET_KEY", Value="change-me", Type="SecureString")
    path = inventory(tmp_path, {"backend": "aws-ssm", "prefix": "/weak/prod/", "region": "eu-west-1",
                                "endpoint_url": aws})
    result = subprocess.run([sys.executable, "-m", "smship", "deploy", "prod", "-i", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 1, result
    assert "SSM parameters under /weak/prod/: SM_SECRET_KEY is a known default value; refusing to deploy" \
        in result.stderr, result.stderr
    assert "preflight:" not in result.stderr and "change-me" not in result.stdout + result.stderr
