"""What smship shows: per-host progress for people, one JSON document for CI.

Progress always goes to stderr, so ``--output json`` keeps stdout for the
single machine-readable document printed when a command finishes.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Iterator, Literal, TextIO

from rich.console import Console
from rich.markup import escape

Status = Literal["ok", "changed", "failed", "skipped"]
_STYLE = {"ok": "green", "changed": "yellow", "failed": "bold red", "skipped": "dim"}


def tally(statuses: Iterable[str], order: Iterable[str]) -> str:
    """How many of each status, in ``order``, those with none left out: "2 ok, 1 changed"."""
    counted = Counter(statuses)
    return ", ".join(f"{counted[status]} {status}" for status in order if counted[status])


@dataclass
class HostReport:
    host: str
    status: Status
    message: str = ""
    seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


class Reporter:
    """Collects per-host outcomes and prints them as they happen."""

    def __init__(self, output: Literal["text", "json"] = "text", stream: TextIO | None = None):
        self.output = output
        self.console = Console(file=stream or sys.stderr, highlight=False, soft_wrap=True)
        self.reports: list[HostReport] = []
        self.data: dict[str, Any] = {}
        # The closing line's account of a command whose hosts report no outcome (status, check).
        self.summary: str | None = None
        self._started = time.monotonic()

    def step(self, title: str) -> None:
        # When each step began (wall clock): the bench marks them on its clients' latency plots.
        self.data.setdefault("timeline", []).append({"at": round(time.time(), 3), "step": title})
        self.console.print(f"[bold]==>[/] {escape(title)}")

    def info(self, message: str) -> None:
        self.console.print(f"    {escape(message)}")

    def waiting(self, title: str, hosts: list[str], seconds: float, why: str = "") -> None:
        """A step some hosts have not finished yet: which, and for how long."""
        self.info(f"{title}: still waiting for {', '.join(hosts)} after {seconds:.0f}s" + (f" ({why})" if why else ""))

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}")

    def error(self, message: str) -> None:
        self.console.print(f"[bold red]error:[/] {escape(message)}")

    def host(self, host: str, status: Status, message: str = "", seconds: float | None = None,
             **details: Any) -> HostReport:
        report = HostReport(host, status, message, seconds, details)
        self.reports.append(report)
        timing = f" [dim]({seconds:.1f}s)[/]" if seconds is not None else ""
        self.console.print(f"    {escape(host):<12} [{_STYLE[status]}]{status:<8}[/] {escape(message)}{timing}")
        return report

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase of the command; the JSON document's ``phases`` holds its seconds."""
        began = time.monotonic()
        try:
            yield
        finally:
            phases = self.data.setdefault("phases", {})
            phases[name] = round(phases.get(name, 0) + time.monotonic() - began, 3)

    @property
    def failed(self) -> bool:
        return any(report.status == "failed" for report in self.reports)

    def finish(self, command: str, ok: bool | None = None, stdout: TextIO | None = None) -> bool:
        """Print the closing summary (and the JSON document); True when all went well."""
        ok = (not self.failed) if ok is None else ok
        seconds = time.monotonic() - self._started
        summary = tally((r.status for r in self.reports), _STYLE)
        verdict = "[green]done[/]" if ok else "[bold red]failed[/]"
        self.console.print(f"{verdict} {escape(command)}: {summary or escape(self.summary or 'nothing to do')} in {seconds:.1f}s")
        if self.output == "json":
            document = {"command": command, "ok": ok, "seconds": round(seconds, 3),
                        "hosts": [asdict(r) for r in self.reports], **self.data}
            print(json.dumps(document, default=str), file=stdout or sys.stdout)
        return ok
