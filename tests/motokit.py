"""moto's server on 127.0.0.1: a real AWS-compatible endpoint for SSM and Secrets Manager tests."""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from netkit import free_port, wait_listening

# Credentials moto accepts; also keeps boto3 from reading this machine's own AWS configuration.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
REGION = "eu-west-1"



@contextmanager
def moto_server(log_dir: Path) -> Iterator[str]:
    """Start ``moto.server`` on a free loopback port; its endpoint URL, stopped on exit."""
    port = free_port()
    with (log_dir / "moto.log").open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_listening(port, 30, lambda: "moto server did not start", alive=lambda: proc.poll() is None)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def client(endpoint: str, service: str):
    import boto3
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
