"""What makes the app's signing key (``SM_SECRET_KEY`` by default) acceptable outside development.

One rule, used by deploy's preflight, ``smship check`` and ``rotate-secret``:
a key signs every session cookie, so a guessable one lets anyone forge a
session. ``generate`` makes keys of the strength the rule asks for.
"""

from __future__ import annotations

import math
import secrets as _secrets
from collections import Counter

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


def estimated_bits(value: str) -> float:
    """Entropy estimate from the value's own symbol frequencies (an upper bound for weak keys)."""
    if not value:
        return 0.0
    counts = Counter(value)
    per_symbol = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return per_symbol * len(value)


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
