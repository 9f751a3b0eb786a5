"""``smship logs``: the app's journals from every host at once, one line per entry.

Each host streams ``journalctl -o cat`` (the message as the app wrote it, so
a JSON line stays a JSON line) over its own SSH connection; lines are
printed as they arrive, prefixed with the host's name.
"""

from __future__ import annotations

import re
import signal
import sys
import threading

from smship.command import Command
from smship.context import EnvContext, open_fleet
from smship.errors import SmshipError
from smship.hostroles import APP_ROLES, units_of
from smship.ssh import until_disconnected

ROLES = ("web", "worker", "beat", "db", "lb")
DEFAULT_LINES = 100

def since_argument(since: str) -> str:
    """``10m`` / ``2h`` / ``1d`` mean that long ago; anything else goes to journalctl as written."""
    if re.fullmatch(r"\d+\s*(s|sec|m|min|h|d|w)", since.strip()):
        return "-" + since.strip().replace(" ", "")
    return since


def journal_command(units: list[str], since: str | None, follow: bool, lines: int | None) -> Command:
    argv = ["--no-pager", "--quiet", "-o", "cat"]
    for unit in units:
        argv += ["-u", unit]
    if since:
        argv += ["--since", since_argument(since)]
    if lines is not None:
        argv += ["-n", str(lines)]
    if follow:
        return until_disconnected(("journalctl", *argv, "-f"), sudo=True, description="journalctl -f " + " ".join(units))
    return Command(("journalctl", *argv), sudo=True, description="journalctl " + " ".join(units))


def prefix(host: str, width: int, line: str) -> str:
    return f"{host:<{width}} | {line}"


def logs(ctx: EnvContext, role: str | None = None, since: str | None = None, follow: bool = False,
         lines: int | None = None) -> bool:
    layout = ctx.layout
    if role is not None and role not in ROLES:
        raise SmshipError(f"--role {role!r}: one of {', '.join(ROLES)}")
    chosen = [(h, units_of(layout, [role] if role else [r for r in h.roles if r in APP_ROLES], pattern=True))
              for h in ctx.env.hosts if (role in h.roles if role else set(h.roles) & {"web", "worker", "beat"})]
    if not chosen:
        raise SmshipError(f"no host of {ctx.name} has the role {role}")
    if lines is None and not since:
        lines = DEFAULT_LINES if not follow else 10
    width = max(len(h.name) for h, _ in chosen)
    out_lock = threading.Lock()
    problems: dict[str, str] = {}

    def pump(name: str, process) -> None:
        for raw in process.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            with out_lock:
                sys.stdout.write(prefix(name, width, text) + "\n")
                sys.stdout.flush()

    with open_fleet(ctx, [h for h, _ in chosen]) as fleet:
        processes = {h.name: fleet.stream(h.name, journal_command(units, since, follow, lines)) for h, units in chosen}
        threads = [threading.Thread(target=pump, args=(n, p), daemon=True) for n, p in processes.items()]
        previous = signal.signal(signal.SIGTERM, _interrupt)
        finished = False
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
            finished = True
        except KeyboardInterrupt:
            if not follow:
                raise
            finished = False
        finally:
            signal.signal(signal.SIGTERM, previous)
            for name, process in processes.items():
                problem = _end(process, wait=10 if finished else 0)
                if problem and finished:
                    problems[name] = problem
    for name, problem in problems.items():
        ctx.reporter.host(name, "failed", problem)
    return not problems


def _end(process, wait: float) -> str | None:
    """Let ``process`` finish (or stop it); what went wrong, if anything."""
    try:
        process.wait(timeout=wait)
    except Exception:
        process.terminate()
        try:
            process.wait(timeout=10)
        except Exception:
            process.kill()
            process.wait()
        return None if not wait else "did not finish"
    if process.returncode == 0:
        return None
    error = process.stderr.read().decode("utf-8", "replace").strip()
    return error.splitlines()[-1] if error else f"exit {process.returncode}"


def _interrupt(signum, frame):
    raise KeyboardInterrupt
