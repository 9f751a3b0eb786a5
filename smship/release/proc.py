"""Running local programs for a build, with failures as one clear error."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping, Sequence

from smship.errors import SmshipError


def run(argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        what: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` and return its result; raise :class:`SmshipError` on failure.

    ``what`` names the step in the error ("npm ci", "git archive").  The
    error carries the last lines the program wrote, so the cause is visible
    without a traceback.  ``env`` is added to the current environment.
    """
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
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
