"""Postgres's SCRAM-SHA-256 password verifier, computed where the password is.

``ALTER ROLE ... PASSWORD`` given a verifier stores it as is, so the
password itself never reaches the database server, its logs or its
statement statistics.  The format is Postgres's
(``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``, base64),
with the password prepared by SASLprep (RFC 4013) the way Postgres and
libpq prepare it, so a client's login matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

ITERATIONS = 4096  # Postgres's default scram_iterations
SALT_BYTES = 16

_PROHIBITED = (stringprep.in_table_c12, stringprep.in_table_c21, stringprep.in_table_c22,
               stringprep.in_table_c3, stringprep.in_table_c4, stringprep.in_table_c5,
               stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
               stringprep.in_table_c9, stringprep.in_table_a1)


def saslprep(password: str) -> bytes:
    """The bytes Postgres hashes for ``password``.

    ASCII passes unchanged; otherwise SASLprep, and where SASLprep refuses
    the text, the raw UTF-8 (Postgres does the same, so a login still works).
    """
    if password.isascii():
        return password.encode()
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c))
    prepared = unicodedata.normalize("NFKC", mapped)
    raw = password.encode()
    if not prepared or any(check(c) for c in prepared for check in _PROHIBITED):
        return raw
    right_to_left = [stringprep.in_table_d1(c) for c in prepared]
    if any(right_to_left):
        if any(stringprep.in_table_d2(c) for c in prepared) or not (right_to_left[0] and right_to_left[-1]):
            return raw
    return prepared.encode()


def verifier(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The verifier Postgres stores for ``password`` (a fresh random salt unless one is given)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda data: base64.b64encode(data).decode()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
