"""``smship logs``: the app's journals from every host at once, one line per entry.

Each host streams ``journalctl -o cat`` (the message as the app wrote it, so
a JSON line stays a JSON line) over its own SSH connection; lines are
printed as they arrive, prefixed with the host's name. With a ``logs``
section the collector keeps a copy of every app host's journal: a host whose
SSH connection fails is read there instead, and ``--from-collector`` reads
every host there.
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
from smship.logship import collector_of, collector_source, ships
from smship.ssh import until_disconnected

ROLES = ("web", "worker", "beat", "db", "lb")
SSH_FAILED = 255  # ssh's own exit status: the connection, not the remote command, failed
DEFAULT_LINES = 100

def since_argument(since: str) -> str:
    """``10m`` / ``2h`` / ``1d`` mean that long ago; anything else goes to journalctl as written."""
    if re.fullmatch(r"\d+\s*(s|sec|m|min|h|d|w)", since.strip()):
        return "-" + since.strip().replace(" ", "")
    return since


def journal_command(units: list[str], since: str | None, follow: bool, lines: int | None,
                    source: tuple[str, ...] = ()) -> Command:
    """``source``: where to read instead of the host's own journal (a sender's files on the collector)."""
    argv = ["--no-pager", "--quiet", "-o", "cat", *source]
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
         lines: int | None = None, from_collector: bool = False) -> bool:
    layout = ctx.layout
    collector = collector_of(ctx.env)
    if from_collector and collector is None:
        raise SmshipError(f"--from-collector: environment {ctx.name} has no 'logs' section, so no collector")
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

    def pump(name: str, process) -> int:
        count = 0
        for raw in process.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            count += 1
            with out_lock:
                sys.stdout.write(prefix(name, width, text) + "\n")
                sys.stdout.flush()
        return count

    def from_collector_of(host, units):
        command = journal_command(units, since, follow, lines, collector_source(host))
        return fleet.stream(collector.name, command)  # type: ignore[union-attr]

    def read(host, units) -> None:
        if from_collector:
            processes[host.name] = from_collector_of(host, units)
            pump(host.name, processes[host.name])
            return
        process = processes[host.name] = fleet.stream(host.name, journal_command(units, since, follow, lines))
        if pump(host.name, process) or collector is None or collector.name == host.name:
            return
        process.wait()
        if process.returncode != SSH_FAILED or not ships(ctx.env, host):
            return
        # The host cannot be reached: its lines as the collector received them.
        ctx.reporter.warn(f"{host.name}: not reached over SSH; its lines from the collector {collector.name}")
        processes[host.name] = from_collector_of(host, units)
        pump(host.name, processes[host.name])

    hosts = [h for h, _ in chosen] + ([collector] if collector is not None and collector not in
                                      [h for h, _ in chosen] else [])
    with open_fleet(ctx, hosts) as fleet:
        processes: dict = {}
        threads = [threading.Thread(target=read, args=(h, units), daemon=True) for h, units in chosen]
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
            for name, process in list(processes.items()):
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
    last = error.splitlines()[-1] if error else f"exit {process.returncode}"
    return None if no_unit_logged(last) else last


def no_unit_logged(error: str) -> bool:
    """Whether journalctl's error says only that no unit it was asked for (``-u`` patterns) ever logged
    in what it read: a host that has no lines to show, not a failure."""
    return "filter for units" in error and error.endswith("No data available")


def _interrupt(signum, frame):
    raise KeyboardInterrupt
