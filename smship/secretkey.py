"""What makes the app's signing key (``SM_SECRET_KEY`` by default) acceptable outside development.

One rule, used by deploy's preflight, ``smship check`` and ``rotate-secret``:
a key signs every session cookie, so a guessable one lets anyone forge a
session. ``generate`` makes keys of the strength the rule asks for.
"""

from __future__ import annotations

import math
import secrets as _secrets
from collections import Counter
from typing import Sequence

MINIMUM_BITS = 256
# Defaults shipped by the framework, its examples and common tutorials.
KNOWN_DEFAULTS = frozenset({
    "change-me-development-only", "change-me", "changeme", "secret", "secret-key", "dev",
    "development", "test", "test-secret-key", "insecure", "please-change-me",
})
DEVELOPMENT_ENVIRONMENTS = frozenset({"development", "testing"})


def generate() -> str:
    """A fresh key: 48 random bytes (384 bits), URL-safe text."""
    return _secrets.token_urlsafe(48)


def _shannon_bits(items: Sequence) -> float:
    """Bits of ``items`` judged by their own frequencies."""
    counts = Counter(items)
    return -sum(n * math.log2(n / len(items)) for n in counts.values())


def _pool(value: str) -> int:
    """How many symbols the character classes ``value`` uses offer (a-z, A-Z, 0-9, punctuation, others)."""
    classes = [(str.islower, 26), (str.isupper, 26), (str.isdigit, 10)]
    size = sum(n for test, n in classes if any(c.isascii() and test(c) for c in value))
    if any(c.isascii() and not c.isalnum() for c in value):
        size += 33
    return size + len({c for c in value if not c.isascii()})


def estimated_bits(value: str) -> float:
    """An honest upper bound of the value's entropy: the least of three views.

    Its own symbol frequencies (repeated symbols add little); its length times
    the bits of its character classes (letters and digits give ~5.95 bits a
    symbol at best); and the steps between neighbours (``abc...XYZ0123``
    shows 62 distinct symbols, but each follows from the one before).
    """
    if not value:
        return 0.0
    pool = _pool(value)
    steps = [ord(b) - ord(a) for a, b in zip(value, value[1:])]
    by_steps = math.log2(pool) + (_shannon_bits(steps) if steps else 0.0)
    return max(0.0, min(_shannon_bits(value), len(value) * math.log2(pool), by_steps))


def weakness(value: str | None, name: str = "SM_SECRET_KEY") -> str | None:
    """Why ``value`` is not acceptable as a production key, or None when it is; ``name``: the app's name for it."""
    if not value:
        return f"{name} is not set"
    if value.strip().lower() in KNOWN_DEFAULTS:
        return f"{name} is a known default value"
    bits = estimated_bits(value)
    if bits < MINIMUM_BITS:
        return (f"{name} is weak (about {bits:.0f} bits, at least {MINIMUM_BITS} needed); "
                f"generate one with `smship rotate-secret ENV` or python -c 'import secrets; "
                f"print(secrets.token_urlsafe(48))'")
    return None
