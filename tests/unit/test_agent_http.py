"""The agent's own HTTP/1.1 GET, which its health checks use, on real sockets: bodies by length, in chunks or
up to the close, answers split anywhere, and answers that are not HTTP. Over a slot's unix socket and over
TLS to a local server, as the gate asks a host's own nginx."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading

import pytest

from netkit import UnixServer, free_port, self_signed
from smship.remote import agent

HEALTH = {"host": "shop.example.com"}


class Scripted(UnixServer):
    """Reads the request's head, then sends ``pieces`` one ``send`` each, then closes (or keeps the
    connection open when ``keep_open``: a body by length or in chunks must not wait for the close)."""

    def __init__(self, path, pieces: list[bytes], keep_open: bool = False):
        self.heads: list[bytes] = []
        self.pieces, self.keep_open, self.release = pieces, keep_open, threading.Event()
        super().__init__(path, self._answer)

    def _answer(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            head += conn.recv(4096)
        self.heads.append(head)
        for piece in self.pieces:
            conn.sendall(piece)
        if self.keep_open:
            self.release.wait(10)

    def close(self):
        self.release.set()
        super().close()


def get_through(tmp_path, pieces, keep_open=False, path="/health/ready"):
    server = Scripted(tmp_path / "slot.sock", pieces, keep_open)
    try:
        return agent._get({**HEALTH, "socket": str(tmp_path / "slot.sock")}, path), server.heads
    finally:
        server.close()


def test_a_body_of_known_length_is_read_without_waiting_for_the_close(tmp_path):
    answer = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 21\r\n\r\n{"status": "healthy"}'
    (status, body), heads = get_through(tmp_path, [answer[:30], answer[30:75], answer[75:]], keep_open=True)
    assert (status, body) == (200, b'{"status": "healthy"}')
    head = heads[0].decode()
    assert head.startswith("GET /health/ready HTTP/1.1\r\n")
    for line in ("Host: shop.example.com", "Connection: close", "Accept-Encoding: identity",
                 "X-Forwarded-Proto: https", "X-Forwarded-For: 127.0.0.1"):
        assert line in head.splitlines(), head


def test_a_chunked_body_is_joined_across_sends_and_its_trailers_left(tmp_path):
    pieces = [b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n",
              b"b;ext=1\r\n{\"status\": ", b"\r\n", b"C\r\n\"unhealthy\"}\r", b"\n0\r\nX-Trailer: 1\r\n\r\n"]
    (status, body), _ = get_through(tmp_path, pieces, keep_open=True)
    assert (status, body) == (503, b'{"status": "unhealthy"}')


def test_a_body_without_length_ends_at_the_close(tmp_path):
    (status, body), _ = get_through(tmp_path, [b"HTTP/1.0 200\r\n\r\nok", b" then more"])
    assert (status, body) == (200, b"ok then more")


@pytest.mark.parametrize("pieces, said", [
    ([b"SSH-2.0-OpenSSH_10.0\r\n\r\n"], "not an HTTP answer"),
    ([b"HTTP/1.1 20 OK\r\n\r\n"], "not an HTTP answer"),
    ([b"HTTP/1.1 200 OK\r\nContent-Le"], "before the answer's headers ended"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"], "before its Content-Length"),
    ([b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"], "Content-Length is"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"], "not hexadecimal"),
    ([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"], "inside a chunk"),
    ([b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (agent.ANSWER_LIMIT + 70000)], "larger than"),
])
def test_an_answer_that_is_not_whole_http_is_an_oserror(tmp_path, pieces, said):
    with pytest.raises(OSError, match=said):
        get_through(tmp_path, pieces)


def test_a_line_break_in_the_path_is_refused_before_anything_is_sent(tmp_path):
    server = Scripted(tmp_path / "slot.sock", [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    try:
        with pytest.raises(OSError, match="line break"):
            agent._get({**HEALTH, "socket": str(tmp_path / "slot.sock")}, "/health\r\nX-Evil: 1")
        assert server.heads == []
    finally:
        server.close()


def test_the_check_through_nginx_speaks_tls_to_the_loopback_port(tmp_path):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path, "shop.example.com"))
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    heads = []

    def serve_one():
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            heads.append(tls.recv(4096))
            tls.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n{"status": "alive"}')

    serving = threading.Thread(target=serve_one, daemon=True)
    serving.start()
    try:
        status, body = agent._get({**HEALTH, "port": port}, "/health/live")
    finally:
        serving.join(5)
        listener.close()
    assert (status, body) == (200, b'{"status": "alive"}')
    assert heads[0].startswith(b"GET /health/live HTTP/1.1\r\nHost: shop.example.com\r\n")
    assert b"X-Forwarded-For" not in heads[0]


def test_the_agent_imports_no_module_a_request_does_not_use():
    # The start-up of every call: a module imported at the top costs each call its import.
    probe = ("import sys; sys.argv = ['agent']; exec(compile(open(%r).read(), 'agent', 'exec'), "
             "{'__name__': 'probe'}); print(' '.join(sorted(sys.modules)))" % agent.__file__)
    loaded = subprocess.run([sys.executable, "-I", "-S", "-c", probe], capture_output=True, text=True,
                            check=True).stdout.split()
    for heavy in ("http", "email", "ssl", "socket", "hashlib", "tempfile", "shutil", "base64", "shlex"):
        assert heavy not in loaded, heavy
