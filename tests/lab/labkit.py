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


REFERENCE_APP = Path(__file__).resolve().parents[2] / "examples" / "smpy-app"
_COPY_IGNORE = ("node_modules", ".venv", "__pycache__", "dist", ".pytest_cache")


def app_variant(directory: Path, edits: dict[str, list[tuple[str, str]]] | None = None,
                files: dict[str, str] | None = None, message: str = "variant") -> Path:
    """A copy of the reference app as its own git repository, changed and committed.

    ``edits`` maps a path to (old, new) replacements, each of which must match
    exactly once; ``files`` adds or replaces whole files.
    """
    import shutil

    if not (directory / ".git").is_dir():
        shutil.copytree(REFERENCE_APP, directory, ignore=shutil.ignore_patterns(*_COPY_IGNORE))
        git(directory, "init", "-q", "-b", "main")
    for relative, replacements in (edits or {}).items():
        path = directory / relative
        text = path.read_text()
        for old, new in replacements:
            assert text.count(old) == 1, f"{relative}: {old!r} found {text.count(old)} times"
            text = text.replace(old, new)
        path.write_text(text)
    for relative, text in (files or {}).items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "--allow-empty", "-m", message)
    return directory


def git(directory: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.name=smship tests", "-c", "user.email=tests@smship.invalid",
                           *args], cwd=directory, capture_output=True, text=True, check=True)
    return proc.stdout


class SteadyClient:
    """Bounded steady load on one URL from a thread: every request's outcome, for zero-downtime checks.

    At most ``max_requests`` requests, ``interval`` seconds apart, for at most
    ``max_seconds``; only lab addresses are ever given to it.
    """

    def __init__(self, address: str, path: str = "/version", host: str = "refapp.lab.test",
                 interval: float = 0.02, max_requests: int = 20000, max_seconds: float = 600):
        import threading

        self.url = f"https://{address}{path}"
        self.host, self.interval = host, interval
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.releases: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import time

        import httpx

        deadline = time.monotonic() + self.max_seconds
        # verify=False: the lab's certificate is self-signed; TLS itself is tested elsewhere.
        with httpx.Client(verify=False, timeout=65, headers={"Host": self.host}) as client:
            for _ in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                began = time.monotonic()
                try:
                    response = client.get(self.url)
                    if response.status_code == 200:
                        self.ok += 1
                        self.releases.add(response.json().get("release", "?") if "json" in
                                          response.headers.get("content-type", "") else "?")
                    else:
                        self.failures.append(f"HTTP {response.status_code}: {response.text[:120]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self.latencies.append(time.monotonic() - began)
                self._stop.wait(self.interval)

    def __enter__(self) -> "SteadyClient":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def summary(self) -> str:
        return f"{self.url}: {self.ok} ok, {len(self.failures)} failed {self.failures[:5]}"
