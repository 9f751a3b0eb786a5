"""A real S3-compatible server for lab tests: moto's server behind nginx with TLS.

moto (plain HTTP) and nginx (TLS, a certificate from a CA made here) both
listen on the lab bridge's own address, so lab hosts reach them and nothing
outside this machine can.  The certificate names the DNS name ``s3.lab.test``
(pgBackRest checks DNS names only) and the bridge address (for boto3 on this
machine, which cannot resolve the lab's names).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from netkit import free_port

S3_NAME = "s3.lab.test"
ACCESS_KEY = "smship-lab-key"
SECRET_KEY = "smship-lab-secret-not-for-use-elsewhere"


def wait_port(address: str, port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection((address, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {address}:{port} within {timeout}s")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(directory: Path, address: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for S3_NAME and ``address``."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=smship lab test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={S3_NAME}",
            "-keyout", "server.key", "-out", "server.csr", cwd=directory)
    (directory / "server.ext").write_text(f"subjectAltName=DNS:{S3_NAME},IP:{address}\n"
                                          "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "server.ext", "-out", "server.crt", cwd=directory)
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


NGINX_CONF = """\
daemon off;
user root;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/nginx-access.log;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    client_max_body_size 0;
    server {{
        listen {address}:{tls_port} ssl;
        server_name {name};
        ssl_certificate {dir}/server.crt;
        ssl_certificate_key {dir}/server.key;
        location / {{
            proxy_pass http://{address}:{http_port};
            proxy_http_version 1.1;
            # moto would read a bucket out of a host name (virtual-host style);
            # by address it sees path style.  It checks no signatures.
            proxy_set_header Host $proxy_host;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


class S3Server:
    """moto on ``address`` (HTTP) with nginx in front (HTTPS); ``stop()`` ends both."""

    def __init__(self, directory: Path, address: str):
        self.dir, self.address = Path(directory), address
        self.procs: list[subprocess.Popen] = []

    def start(self) -> "S3Server":
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_file, _, _ = make_certificates(self.dir, self.address)
        self.http_port = free_port(self.address)
        moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", self.address, "-p", str(self.http_port)],
                                stdout=open(self.dir / "moto.log", "wb"), stderr=subprocess.STDOUT)
        self.procs.append(moto)
        wait_port(self.address, self.http_port, moto, "moto_server")
        self.tls_port = free_port(self.address)
        (self.dir / "nginx.conf").write_text(NGINX_CONF.format(dir=self.dir, address=self.address, name=S3_NAME,
                                                               tls_port=self.tls_port, http_port=self.http_port))
        nginx = subprocess.Popen(["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
                                 stdout=open(self.dir / "nginx.log", "wb"), stderr=subprocess.STDOUT)
        self.procs.append(nginx)
        wait_port(self.address, self.tls_port, nginx, "nginx")
        return self

    @property
    def endpoint_by_address(self) -> str:
        """HTTPS by IP address: for boto3 here and on the app hosts."""
        return f"https://{self.address}:{self.tls_port}"

    @property
    def endpoint_by_name(self) -> str:
        """HTTPS by DNS name: for pgBackRest (lab hosts resolve it through /etc/hosts)."""
        return f"https://{S3_NAME}:{self.tls_port}"

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", region_name="us-east-1", endpoint_url=self.endpoint_by_address,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            verify=str(self.ca_file), config=Config(s3={"addressing_style": "path"}))

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if proc.args[0] != "nginx" else signal.SIGQUIT)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.procs.clear()


def secrets_with_keys(lab_secrets: Path, directory: Path) -> Path:
    """A copy of the lab's secrets file with the S3 credentials added (mode 0600, outside git)."""
    path = directory / "secrets.env"
    path.write_text(lab_secrets.read_text().rstrip("\n")
                    + f"\nAWS_ACCESS_KEY_ID={ACCESS_KEY}\nAWS_SECRET_ACCESS_KEY={SECRET_KEY}\n")
    path.chmod(0o600)
    return path


def resolve_on_hosts(lab, address: str) -> None:
    """Make every lab host resolve S3_NAME to ``address``, as a private DNS zone would."""
    line = f"{address} {S3_NAME}"
    for host in lab.hosts:
        proc = lab.ssh(host.name, ["sudo", "sh", "-c",
                                   f"grep -qxF '{line}' /etc/hosts || echo '{line}' >> /etc/hosts"])
        assert proc.returncode == 0, (host.name, proc.stderr)
