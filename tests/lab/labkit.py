"""Running smship itself against a lab, as a user would: helpers for lab tests."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

ENV = "lab"


@dataclass
class SmshipRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def document(self) -> dict[str, Any]:
        """The ``--output json`` document (the last line of stdout)."""
        return json.loads(self.stdout.strip().splitlines()[-1])

    def statuses(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for report in self.document["hosts"]:
            found.setdefault(report["host"], []).append(report["status"])
        return found

    def __str__(self) -> str:
        return f"$ smship {' '.join(self.argv)}  (exit {self.returncode})\n{self.output}"


def run_smship(*argv: str, inventory: Path, timeout: float = 900, env: dict[str, str] | None = None,
               check: bool | None = None) -> SmshipRun:
    """``smship ARGV -i INVENTORY``; ``check=True`` asserts success, ``False`` failure."""
    words = [*argv, "-i", str(inventory)]
    environment = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "smship", *words], capture_output=True, text=True,
                          timeout=timeout, env=environment)
    result = SmshipRun(words, proc.returncode, proc.stdout, proc.stderr)
    if check is True:
        assert result.returncode == 0, str(result)
    elif check is False:
        assert result.returncode != 0, str(result)
    return result


def write_inventory(lab, directory: Path, change: Callable[[dict], None]) -> Path:
    """A copy of the lab inventory in ``directory`` (its project dir), edited by ``change``."""
    data = copy.deepcopy(yaml.safe_load(Path(lab.inventory).read_text()))
    change(data)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "smship.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def lab_env(data: dict) -> dict:
    return data["environments"][ENV]


def remote(lab, host: str, script: str, timeout: float = 60) -> str:
    """Run ``script`` as root on a lab host; its stdout (asserting success)."""
    proc = lab.ssh(host, ["sudo", "sh", "-c", script], timeout=timeout)
    assert proc.returncode == 0, (host, script, proc.stdout, proc.stderr)
    return proc.stdout.decode() if isinstance(proc.stdout, bytes) else proc.stdout
