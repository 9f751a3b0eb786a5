"""The checklist's TLS probe against a real TLS server on loopback: the certificate served, the trust this
machine's CA store gives it, and the store loaded once for every host of a run."""

from __future__ import annotations

import socket
import ssl
import threading

from cryptography import x509

from netkit import self_signed
from smship.checklist import tls


def serving(tmp_path, name: str):
    """A loopback TLS server handing out a self-signed certificate for ``name`` to every connection."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path, name))
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):       # the trusting client's refusal of a self-signed certificate
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener


def test_a_self_signed_certificate_is_read_and_found_untrusted_with_the_store_loaded_once(tmp_path, monkeypatch):
    made = []
    real = ssl.create_default_context

    def counted(*args, **kwargs):
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    tls._made_contexts.cache_clear()
    listener = serving(tmp_path, "shop.example.com")
    served, ready = [], threading.Barrier(3)

    def probe():
        ready.wait()        # all at once, as the checklist probes a fleet's hosts
        served.append(tls.probe("127.0.0.1", "shop.example.com", timeout=5, port=port))
    try:
        port = listener.getsockname()[1]
        probing = [threading.Thread(target=probe) for _ in range(3)]
        for thread in probing:
            thread.start()
        for thread in probing:
            thread.join(30)
    finally:
        listener.close()
        tls._made_contexts.cache_clear()
    assert len(served) == 3
    for each in served:
        assert each.error == "" and each.trusted is False, each
        assert "self-signed" in each.trust_error or "self signed" in each.trust_error, each.trust_error
        assert tls.names_of(x509.load_der_x509_certificate(each.der)) == ["shop.example.com"]
    assert len(made) == 2          # one that takes any certificate, one that trusts the store: for all three


def test_a_refused_port_is_an_error_naming_the_address(tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    served = tls.probe("127.0.0.1", "shop.example.com", timeout=5, port=port)
    assert served.der is None and served.error.startswith(f"127.0.0.1:{port}: "), served
