"""What each host's distribution said the last time: a guess to render its roles with.

Rendering a host's roles needs its distribution's facts (Postgres major, the
app's Python, what apt offers), and gathering the facts the plan needs
requires the rendered roles.  Asked in turn, that is two round trips per
host.  With the last answer remembered here, provision renders first and
asks both in one round trip; the host's answer then confirms the guess, or
refutes it and provision renders again from the fresh answer.  A wrong or
missing memo therefore costs a round trip, never a wrong plan.

Entries hold no secret (versions, paths, a machine name) and live in
smship's cache directory, one file per host and question.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path

from smship.hostos import HostOS
from smship.remote.client import Request
from smship.ssh import Target

TUPLES = {f.name for f in fields(HostOS) if f.type.startswith("tuple")}


def _directory() -> Path:
    from smship.settings import load_settings

    return load_settings().cache_dir / "hostos"


def _entry(env_name: str, target: Target, question: Request[HostOS]) -> Path:
    """One file per host (as reached) and per question: another app or package list asks anew."""
    key = json.dumps([env_name, target.name, target.address, target.port, target.user, target.jump,
                      question.fields], sort_keys=True, default=str)
    return _directory() / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")


def recall(env_name: str, targets: list[Target], question: Request[HostOS]) -> dict[str, HostOS]:
    """The remembered answers of those ``targets`` that have one (unreadable entries count as none)."""
    known = {}
    for target in targets:
        try:
            data = json.loads(_entry(env_name, target, question).read_text())
            data.update({name: tuple(data[name]) for name in TUPLES})
            known[target.name] = HostOS(**data)
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return known


def remember(env_name: str, targets: dict[str, Target], question: Request[HostOS], answers: dict[str, HostOS]) -> None:
    """Keep ``answers`` for the next run; a cache that cannot be written only costs that run's round trip."""
    if not answers:
        return
    try:
        directory = _directory()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name, answer in answers.items():
            path = _entry(env_name, targets[name], question)
            fd, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
            with os.fdopen(fd, "w") as handle:
                json.dump(asdict(answer), handle)
            os.replace(temp, path)
    except OSError:
        pass


def same(guess: HostOS, answer: HostOS | None) -> bool:
    """Every field alike, apt's candidates included (HostOS's own equality leaves them out)."""
    return answer is not None and asdict(guess) == asdict(answer)
