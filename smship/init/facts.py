"""One fact about the app: a value, where it was found, or why it is a guess."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Fact:
    value: Any
    # "backend/taskboard/api.py:12" when read from the code; None for a guess.
    where: str | None = None
    # Why the value was chosen when nothing said it outright.
    guess: str | None = None

    @property
    def comment(self) -> str:
        if self.where is not None:
            return f"found: {self.where}" + (f" ({self.guess})" if self.guess else "")
        return f"GUESS: {self.guess or 'nothing in the code says'}; check it"


def found(value: Any, path: Path, base: Path, line: int | None = None, note: str | None = None) -> Fact:
    where = path.relative_to(base).as_posix() + (f":{line}" if line else "")
    return Fact(value, where, note)


def guessed(value: Any, why: str) -> Fact:
    return Fact(value, None, why)
