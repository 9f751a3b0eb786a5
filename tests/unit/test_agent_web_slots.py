"""The agent's web-slot helpers on real sockets: which slot serves, the units a request means, the gate's
request over a slot's own socket, and the wait for a slot nginx no longer reaches to take what reached it.

systemctl is not needed here; starting and stopping slots is the lab's (tests/lab/test_deploy.py).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

from netkit import UnixServer
from smship.layout import Layout
from smship.remote import agent

LAYOUT = Layout(app="shop", user="shop", root="/srv/shop")


def slots_in(tmp_path) -> dict:
    """Layout.web_slots with its paths moved under ``tmp_path``."""
    web = LAYOUT.web_slots()
    return web | {"upstream": str(tmp_path / "uvicorn.sock"), "socket": str(tmp_path / "%s.sock"),
                  "release": str(tmp_path / "slot-%s")}


def test_the_serving_slot_is_the_one_nginx_s_link_names(tmp_path):
    web = slots_in(tmp_path)
    assert agent._serving_slot(web) is None          # before the first deploy
    (tmp_path / "uvicorn.sock").symlink_to(tmp_path / "b.sock")
    assert agent._serving_slot(web) == "b"
    (tmp_path / "uvicorn.sock").unlink()
    (tmp_path / "uvicorn.sock").symlink_to("/run/elsewhere.sock")
    assert agent._serving_slot(web) is None          # a link smship did not write names no slot


def test_the_web_template_names_in_a_request_stand_for_the_serving_slot(tmp_path):
    web = slots_in(tmp_path)
    units = [LAYOUT.web_socket, LAYOUT.web_service, LAYOUT.worker_service]
    assert agent._units({"units": units, "web": web}) == ["shop-web@a.socket", "shop-web@a.service",
                                                          "shop-worker.service"]
    (tmp_path / "uvicorn.sock").symlink_to(tmp_path / "b.sock")
    assert agent._units({"units": units, "web": web})[:2] == ["shop-web@b.socket", "shop-web@b.service"]
    assert agent._units({"units": [LAYOUT.worker_service]}) == ["shop-worker.service"]


def test_a_host_still_running_the_pre_slot_web_unit_is_refused_by_name(tmp_path, monkeypatch):
    assert LAYOUT.web_slots()["legacy"] == ["shop-web.service", "shop-web.socket"]
    web = slots_in(tmp_path) | {"legacy": ["smship-test-no-such-unit.service"]}
    assert agent._web_refusal(web) is None


class SlotServer(UnixServer):
    """A slot's uvicorn: answers every request healthy and records each request's head."""

    def __init__(self, path):
        self.heads: list[bytes] = []
        super().__init__(path, self._answer)

    def _answer(self, conn):
        self.heads.append(conn.recv(65536))
        body = b'{"status": "healthy"}'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (len(body), body))


def test_the_gate_asks_the_slot_s_own_socket_as_nginx_would(tmp_path):
    server = SlotServer(tmp_path / "a.sock")
    try:
        status, body = agent._get({"socket": str(tmp_path / "a.sock"), "host": "shop.example.com"}, "/health/ready")
        assert (status, body) == (200, b'{"status": "healthy"}')
        head = server.heads[0].decode()
        assert head.startswith("GET /health/ready HTTP/1.1\r\n")
        for line in ("Host: shop.example.com", "X-Forwarded-Proto: https", "X-Forwarded-For: 127.0.0.1"):
            assert line in head.splitlines(), head
    finally:
        server.close()


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed (scripts/setup-deps installs it)")
def test_the_old_slot_is_stopped_only_once_it_accepted_every_queued_connection(tmp_path):
    path = tmp_path / "a.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    queued = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for client in queued:
            client.connect(str(path))       # in the backlog: nobody accepted them yet
        accepted = []

        def accept_later():
            time.sleep(0.3)
            for _ in queued:
                accepted.append(listener.accept()[0])

        accepting = threading.Thread(target=accept_later, daemon=True)
        began = time.monotonic()        # before the thread's 0.3 s sleep begins
        accepting.start()
        agent._await_backlog(str(path))
        assert time.monotonic() - began >= 0.3       # it waited for the accepts
        accepting.join(5)
        assert len(accepted) == 3
        began = time.monotonic()
        agent._await_backlog(str(path))      # nothing queued: no wait
        assert time.monotonic() - began < 0.5
        agent._await_backlog(str(tmp_path / "gone.sock"))   # no such socket: nothing to wait for
    finally:
        for conn in queued:
            conn.close()
        listener.close()
