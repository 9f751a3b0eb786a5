"""What a host's HTTPS answers with, seen from the machine running smship.

The handshake itself does not verify (a self-signed or private-CA
certificate must still be judged: its name, its expiry, whether it is the
configured one); trust in this machine's CA store is asked separately.
"""

from __future__ import annotations

import datetime as dt
import functools
import socket
import ssl
import threading
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID


@dataclass
class Served:
    der: bytes | None = None
    trusted: bool | None = None
    trust_error: str = ""
    error: str = ""


def _handshake(address: str, port: int, domain: str, context: ssl.SSLContext, timeout: float) -> bytes:
    with socket.create_connection((address, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=domain) as tls:
            return tls.getpeercert(binary_form=True)


_CONTEXTS_LOCK = threading.Lock()


def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(one that takes any certificate, one that trusts this machine's CA store), made once: loading the
    store costs about 20 ms of CPU each time, twice per host (a second on 24 hosts). The hosts are
    probed at once, so the first probes wait for one making rather than each making its own; a context
    is then shared by their threads, as the ssl module allows."""
    with _CONTEXTS_LOCK:
        return _made_contexts()


@functools.cache
def _made_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    return loose, ssl.create_default_context()


def probe(address: str, domain: str, timeout: float = 10, port: int = 443) -> Served:
    """Connect to ``address``:``port`` with SNI ``domain``; the certificate it serves."""
    loose, trusting = _contexts()
    try:
        served = Served(der=_handshake(address, port, domain, loose, timeout))
    except (OSError, ssl.SSLError) as exc:
        return Served(error=f"{address}:{port}: {exc}")
    try:
        _handshake(address, port, domain, trusting, timeout)
        served.trusted = True
    except ssl.SSLCertVerificationError as exc:
        served.trusted, served.trust_error = False, exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        served.trusted, served.trust_error = False, str(exc)
    return served


def names_of(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        return [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


def name_matches(names: list[str], domain: str) -> bool:
    """RFC 6125 in short: exact, or a wildcard for exactly one left-most label."""
    domain = domain.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == domain:
            return True
        if name.startswith("*.") and "." in domain and domain.split(".", 1)[1] == name[2:]:
            return True
    return False


def days_left(cert: x509.Certificate, now: dt.datetime | None = None) -> float:
    now = now or dt.datetime.now(dt.timezone.utc)
    return (cert.not_valid_after_utc - now).total_seconds() / 86400


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def first_pem(text: str) -> x509.Certificate | None:
    """The leaf: the first certificate of a PEM bundle."""
    marker = "-----BEGIN CERTIFICATE-----"
    if marker not in text:
        return None
    start = text.index(marker)
    end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    return x509.load_pem_x509_certificate(text[start:end].encode())
