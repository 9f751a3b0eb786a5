"""Running local programs for a build, with failures as one clear error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from smship.errors import SmshipError

# What a build tool may see of this machine's environment: locale, paths,
# proxies and CA bundles, and the tools' own settings. Everything else (a
# CI's secrets, the secrets backend's values and credentials) stays out.
PASSED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "SHELL",
                    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                    "no_proxy", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
                    "NODE_EXTRA_CA_CERTS", "CI"})
PASSED_PREFIXES = ("LC_", "XDG_", "NPM_CONFIG_", "npm_config_", "UV_", "PIP_")


def tool_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This machine's harmless variables plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if k in PASSED or k.startswith(PASSED_PREFIXES)}
    return {**base, **extra}


def run(argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        what: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` and return its result; raise :class:`SmshipError` on failure.

    ``what`` names the step in the error ("npm ci", "git archive").  The
    error carries the last lines the program wrote, so the cause is visible
    without a traceback.  With ``env`` (build tools: npm, uv) the program
    runs with :func:`tool_environment` plus ``env``, not this process's
    whole environment; without it (git) it inherits the environment.
    """
    full_env = None if env is None else tool_environment(env)
    try:
        done = subprocess.run(list(argv), cwd=cwd, env=full_env, input=input,
                              capture_output=True)
    except FileNotFoundError:
        raise SmshipError(f"{what}: program {argv[0]!r} was not found on PATH") from None
    if done.returncode != 0:
        raise SmshipError(f"{what} failed (exit {done.returncode}): {tail(done)}")
    return done


def tail(done: subprocess.CompletedProcess, lines: int = 6) -> str:
    """The last lines of a finished program's output, joined into one line."""
    text = (done.stderr or b"").decode(errors="replace").strip()
    if not text:
        text = (done.stdout or b"").decode(errors="replace").strip()
    last = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(last) or "no output"
