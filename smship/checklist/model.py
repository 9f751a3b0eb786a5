"""What a check is and what it answers.

A check is a named function over the gathered :class:`~smship.checklist.facts.Facts`
returning one :class:`Verdict`: ``pass``, ``warn`` or ``fail``, a one-line
reason and, unless it passed, the fix.  Names are what ``--skip-check`` takes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Literal

Status = Literal["pass", "warn", "fail", "skip"]


@dataclass(frozen=True)
class Verdict:
    name: str
    status: Status
    reason: str
    fix: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """``run(facts) -> (status, reason, fix)``.

    ``advisory``: a state the deploy itself repairs (a new release, a
    migration, a restart); deploy's preflight reports its failure as a
    warning instead of refusing to deploy.
    """

    name: str
    summary: str
    run: Callable
    advisory: bool = False

    def judge(self, facts, preflight: bool = False) -> Verdict:
        try:
            status, reason, fix = self.run(facts)
        except Exception as exc:  # a check that breaks must say so, not hide the others
            status, reason, fix = "fail", f"the check itself failed: {type(exc).__name__}: {exc}", \
                "report this as a bug in smship"
        if preflight and self.advisory and status == "fail":
            status, reason = "warn", f"{reason} (the deploy may repair this)"
        return Verdict(self.name, status, reason, "" if status == "pass" else fix)


def parse_skips(values: list[str] | str | None, known: list[str]) -> list[str]:
    """``--skip-check`` values (repeatable, or comma lists) as names; unknown names are an error."""
    from smship.errors import SmshipError

    if isinstance(values, str):
        values = [values]
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SmshipError(f"--skip-check {unknown[0]!r}: no such check; checks are: {', '.join(known)}")
    return list(dict.fromkeys(names))
