"""The environment's upstream CA: how the lb knows it talks to its own web hosts.

The CA's key is 32 random bytes (an Ed25519 seed) kept in the secrets backend
as ``SMSHIP_UPSTREAM_CA_KEY``. Everything else is derived from it, the same
on every run: the CA certificate the lb trusts, and for each web host a key
(HKDF of the seed and the host's name) and a certificate the CA signs for
the one name the lb asks for (``proxy_ssl_name``). Ed25519 signatures are
deterministic and the validity period is fixed, so a second provision
renders the same bytes and changes nothing. Rotating the key re-signs every
web host; the lb trusts the previous CA too (``..._PREVIOUS``) meanwhile.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import secrets as random
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from smship.errors import SmshipError
from smship.secrets import SecretsNotWritable

CA_KEY = "SMSHIP_UPSTREAM_CA_KEY"
PREVIOUS = CA_KEY + "_PREVIOUS"
# Fixed, so the certificates are the same bytes on every run; the CA lives as
# long as its key, which rotation replaces.
NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
NOT_AFTER = dt.datetime(2124, 12, 31, tzinfo=dt.timezone.utc)


def new_key() -> str:
    return base64.urlsafe_b64encode(random.token_bytes(32)).decode().rstrip("=")


def upstream_name(app_name: str) -> str:
    """The name the lb asks its web hosts for (SNI) and checks in their certificate."""
    return f"upstream.{app_name}.smship.internal"


def seed_of(value: str, name: str = CA_KEY) -> bytes:
    """The 32 bytes of a stored key; a malformed one is named, never shown."""
    try:
        seed = base64.urlsafe_b64decode(value.strip() + "=" * (-len(value.strip()) % 4))
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise SmshipError(f"{name} in the secrets backend is not 32 bytes in URL-safe base64 "
                          f"(generate one: python3 -c 'import base64, secrets; "
                          f"print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())')")
    return seed


def _serial(public: bytes, label: str) -> int:
    return int.from_bytes(hashlib.sha256(public + label.encode()).digest()[:16], "big") >> 1 | 1


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _ca(seed: bytes, app_name: str, env_name: str) -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"smship upstream CA {app_name} {env_name}")])
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(public)
            .serial_number(_serial(raw, "ca")).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, None))
    return key, cert


def ca_certificate(seed: bytes, app_name: str, env_name: str) -> str:
    return _pem(_ca(seed, app_name, env_name)[1])


def issue(seed: bytes, app_name: str, env_name: str, purpose: str, holder: str, common_name: str,
          names: list[x509.GeneralName], usages: list[x509.ObjectIdentifier]) -> tuple[str, str]:
    """(certificate PEM, key PEM) signed by the environment's CA. The key is derived from the
    seed, the purpose and the holder: each holder gets its own per purpose, a second run the same bytes."""
    ca_key, ca = _ca(seed, app_name, env_name)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"smship {purpose} {holder}".encode()).derive(seed)
    key = Ed25519PrivateKey.from_private_bytes(derived)
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca.subject).public_key(public).serial_number(_serial(raw, holder))
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, None))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return _pem(cert), key_pem


def web_host_pair(seed: bytes, app_name: str, env_name: str, host_name: str) -> tuple[str, str]:
    """(certificate PEM, key PEM) of one web host, signed by the environment's CA."""
    name = upstream_name(app_name)
    return issue(seed, app_name, env_name, "upstream", host_name, name, [x509.DNSName(name)],
                 [ExtendedKeyUsageOID.SERVER_AUTH])


@dataclass(frozen=True)
class UpstreamTLS:
    """What one host's templates need: the name, and its certificate files' contents."""

    name: str
    trusted: str = ""         # lb: the CA certificate(s), current then previous
    certificate: str = ""     # web: its own certificate and key
    key: str = ""


def for_host(app_name: str, env_name: str, roles: list[str], host_name: str,
             secrets: dict[str, str]) -> UpstreamTLS | None:
    """None on a host that neither verifies nor presents an upstream certificate."""
    if not {"web", "lb"} & set(roles):
        return None
    if CA_KEY not in secrets:
        raise SmshipError(f"{CA_KEY} is not in the secrets backend: 'smship provision' creates it in a file "
                          f"backend; with another backend store one there (URL-safe base64 of 32 random bytes)")
    seed = seed_of(secrets[CA_KEY])
    if "lb" in roles:
        trusted = ca_certificate(seed, app_name, env_name)
        if secrets.get(PREVIOUS):
            trusted += ca_certificate(seed_of(secrets[PREVIOUS], PREVIOUS), app_name, env_name)
        return UpstreamTLS(upstream_name(app_name), trusted=trusted)
    certificate, key = web_host_pair(seed, app_name, env_name, host_name)
    return UpstreamTLS(upstream_name(app_name), certificate=certificate, key=key)


def ensure_ca_key(backend, secrets: dict[str, str]) -> dict[str, str]:
    """``secrets`` with the CA key, generated and stored in ``backend`` if it has none yet."""
    if CA_KEY in secrets:
        seed_of(secrets[CA_KEY])
        return secrets
    try:
        backend.check_writable(CA_KEY)
    except SecretsNotWritable:
        raise SmshipError(f"{CA_KEY} is not in the secrets backend ({backend.description}) and smship cannot "
                          f"store one there: store URL-safe base64 of 32 random bytes as {CA_KEY} (python3 -c "
                          f"'import base64, secrets; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())')"
                          ) from None
    backend.store(CA_KEY, new_key())
    stored = backend.read()
    if CA_KEY not in stored:
        raise SmshipError(f"{CA_KEY} was stored but the secrets backend does not return it")
    return stored
