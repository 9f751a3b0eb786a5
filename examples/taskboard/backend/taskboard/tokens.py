"""Login tokens: ``user.expiry.signature``, an HMAC-SHA256 under SECRET_KEY.

A new key invalidates every token signed with the old one: that is how a
rotated key logs everybody out.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

LIFETIME = 3600


def _sign(key: str, payload: str) -> str:
    digest = hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(key: str, username: str, now: float | None = None) -> str:
    expiry = int((now or time.time()) + LIFETIME)
    payload = f"{username}.{expiry}"
    return f"{payload}.{_sign(key, payload)}"


def verify(key: str, token: str, now: float | None = None) -> str | None:
    """The username the token was issued to, or None for a forged, foreign or expired one."""
    username, _, rest = token.partition(".")
    expiry, _, signature = rest.partition(".")
    if not (username and expiry.isdigit() and signature):
        return None
    if not hmac.compare_digest(signature, _sign(key, f"{username}.{expiry}")):
        return None
    return username if int(expiry) > (now or time.time()) else None


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"{salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    salt, _, digest = stored.partition("$")
    try:
        actual = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=2**14, r=8, p=1, dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(actual.hex(), digest)
