"""The web host's nginx, with the upstream block smship renders, against an uvicorn that drops fresh connections.

A uvicorn restarted in place closes a connection it accepted an instant before the
request arrived. Real nginx, a real socket reached through a link as on a web host:
a GET is tried again and answered; a POST the upstream read is never sent twice (502).
"""

from __future__ import annotations

import shutil
import subprocess

import httpx
import pytest

from netkit import UnixServer, free_port, wait_listening
from test_provision_plan import file_text, project, state_for  # noqa: F401 (project is a fixture)

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (scripts/setup-deps installs it)")


class DroppingUpstream(UnixServer):
    """Answers every connection but the next ones ``drops`` names: closed "unread" (at once, as a stopping
    uvicorn closes a connection it just accepted) or after "read"ing the request (a process that dies
    under it). Records every request it read."""

    def __init__(self, path):
        self.drops: list[str] = []
        self.received: list[bytes] = []
        super().__init__(path, self._answer)

    def _answer(self, conn):
        drop = self.drops.pop(0) if self.drops else None
        if drop == "unread":
            return
        self.received.append(conn.recv(65536).split(b" ", 1)[0])
        if drop != "read":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


def test_a_get_survives_a_dropped_connection_and_a_post_is_never_repeated(project, tmp_path):
    site = file_text(state_for(project, "web1"), "sites-available/shop.conf")
    upstream = site[site.index("upstream shop_uvicorn {"):]
    upstream = upstream[:upstream.index("}") + 1]
    retry = [line.strip() for line in site.splitlines() if line.strip().startswith("proxy_next_upstream")]
    backend = DroppingUpstream(tmp_path / "slot.sock")
    # nginx connects through the link, as on a web host, where it names the serving slot's socket.
    (tmp_path / "uvicorn.sock").symlink_to(tmp_path / "slot.sock")
    listen = free_port()
    (tmp_path / "nginx.conf").write_text(f"""
daemon off;
# The workers must reach the socket in pytest's private directory.
user root;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    {upstream.replace("/var/www/shop/web/uvicorn.sock", str(tmp_path / "uvicorn.sock"))}
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
        wait_listening(listen, 10, lambda: (tmp_path / "error.log").read_text(), alive=lambda: nginx.poll() is None)
        url = f"http://127.0.0.1:{listen}/"

        def sent(drop: str, send) -> int:
            backend.drops = [drop]
            return send(url).status_code

        post = lambda u: httpx.post(u, content=b"x")  # noqa: E731
        assert [sent("unread", httpx.get) for _ in range(3)] == [200, 200, 200]
        assert sent("read", httpx.get) == 200
        assert backend.received == [b"GET"] * 5
        # A POST the upstream read and never answered is not sent again: it may have been acted on.
        assert sent("read", post) == 502
        assert backend.received[5:] == [b"POST"]
        assert httpx.post(url, content=b"x").status_code == 200
    finally:
        nginx.terminate()
        nginx.wait(10)
        backend.close()
