"""The web host's nginx, with the upstream block smship renders, against an uvicorn that drops fresh connections.

A stopping uvicorn closes a connection it accepted an instant before the request
arrived. Real nginx, real sockets on loopback: a GET is tried again and answered,
a POST is not repeated (502).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import httpx
import pytest

from test_provision_plan import file_text, project, state_for  # noqa: F401 (project is a fixture)

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (scripts/setup-deps installs it)")


class DroppingUpstream:
    """Closes the next ``drops`` connections unanswered, answers the others; counts what it saw."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.drops = 0
        self.accepted = 0
        self.answered: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                if self.drops:
                    self.drops -= 1
                    continue
                self.answered.append(conn.recv(65536).split(b" ", 1)[0])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_get_survives_a_dropped_connection_and_a_post_is_never_repeated(project, tmp_path):
    site = file_text(state_for(project, "web1"), "sites-available/shop.conf")
    upstream = site[site.index("upstream shop_uvicorn {"):]
    upstream = upstream[:upstream.index("}") + 1]
    retry = [line.strip() for line in site.splitlines() if line.strip().startswith("proxy_next_upstream")]
    backend = DroppingUpstream()
    listen = free_port()
    (tmp_path / "nginx.conf").write_text(f"""
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    {upstream.replace(":8000 ", f":{backend.port} ")}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://shop_uvicorn;
            proxy_http_version 1.1;
            proxy_set_header Connection "close";
            {" ".join(retry)}
        }}
    }}
}}
""")
    nginx = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.05)
        url = f"http://127.0.0.1:{listen}/"

        def sent(send) -> int:
            backend.drops = 1
            return send(url).status_code

        assert [sent(httpx.get) for _ in range(3)] == [200, 200, 200]
        assert sent(lambda u: httpx.post(u, content=b"x")) == 502
        assert httpx.post(url, content=b"x").status_code == 200
        assert backend.answered == [b"GET"] * 3 + [b"POST"]
        assert backend.accepted == 8
    finally:
        nginx.terminate()
        nginx.wait(10)
        backend.listener.close()
