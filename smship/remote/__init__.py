"""Talking to the smship agent: one JSON request in, one JSON answer out.

The agent (:mod:`smship.remote.agent`) is a standard-library program sent
whole on every call and run as root (``python3 -I -S -c``, through a bootstrap that
reuses its compiled code). The program and then the request travel on stdin:
secrets and file contents never reach a command line, and sudo, which logs
every command line it runs, logs only the short bootstrap, not 50 KB of
program per call.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from smship.command import Command
from smship.errors import SmshipError

AGENT_SOURCE = Path(__file__).with_name("agent.py").read_text()
# The db host's backup program (pgBackRest and Postgres), sent the same way.
PG_AGENT_SOURCE = Path(__file__).with_name("pgagent.py").read_text()

# Runs first, as root: stdin holds the program (its first argv[2] bytes) and then the request. The
# program is compiled once per source (argv[1], its SHA-256) and interpreter, and kept where only root
# can write; a cache that cannot be used is skipped.
BOOTSTRAP = """\
import marshal, os, stat, sys, time
digest, source = sys.argv[1], sys.stdin.buffer.read(int(sys.argv[2]))
home, code, trusted = "/var/cache/smship-agent", None, False
try:
    os.makedirs(home, 0o700, exist_ok=True)
    info = os.lstat(home)
    trusted = stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and not info.st_mode & 0o077
except OSError:
    pass
path = os.path.join(home, digest + "." + sys.implementation.cache_tag)
if trusted:
    try:
        with open(path, "rb") as cached:
            code = marshal.load(cached)
    except (OSError, EOFError, ValueError, TypeError):
        code = None
if code is None:
    code = compile(source, "<smship agent>", "exec")
    if trusted:
        partial = "%s.%d.tmp" % (path, os.getpid())
        try:
            with open(partial, "wb") as out:
                marshal.dump(code, out)
            os.replace(partial, path)
            # Another smship's programs: kept a month after they were compiled.
            for name in os.listdir(home):
                if os.lstat(os.path.join(home, name)).st_mtime < time.time() - 30 * 86400:
                    os.unlink(os.path.join(home, name))
        except OSError:
            try:
                os.unlink(partial)
            except OSError:
                pass
del digest, source, home, trusted, path
sys.argv[1:] = []
exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
"""
_ENCODED: dict[str, tuple[str, bytes]] = {}


def _encoded(source: str) -> tuple[str, bytes]:
    """The program's SHA-256 and its bytes, computed once per program."""
    if source not in _ENCODED:
        data = source.encode()
        _ENCODED[source] = (hashlib.sha256(data).hexdigest(), data)
    return _ENCODED[source]


def agent_argv(source: str = AGENT_SOURCE) -> tuple[str, ...]:
    """``python3 -I -S -c BOOTSTRAP DIGEST LENGTH``: the program itself comes first on stdin.

    Isolated (``-I``): root's interpreter imports nothing from the login's working directory or
    ``PYTHON*`` variables; and without ``site`` (``-S``), which only adds the host's installed packages
    to a program that uses the standard library alone, at a few milliseconds a call.
    """
    digest, data = _encoded(source)
    return ("python3", "-I", "-S", "-c", BOOTSTRAP, digest, str(len(data)))


def _program_command(source: str) -> Command:
    """The agent's command with its program on stdin, the request still to follow."""
    return Command(agent_argv(source), sudo=True, stdin=_encoded(source)[1], description="smship agent")


def _request_tail(request: dict[str, Any]) -> tuple[bytes, str]:
    """What follows the program on the agent's stdin, and the description the command then has."""
    return json.dumps(request).encode(), f"smship agent {request['op']}"


def agent_command(request: dict[str, Any], source: str = AGENT_SOURCE) -> Command:
    tail, description = _request_tail(request)
    program = _program_command(source)
    return replace(program, stdin=program.stdin + tail, description=description)


def agent_request(command: Command) -> dict[str, Any]:
    """The request an :func:`agent_command` carries (what the agent reads after its program)."""
    return json.loads(command.stdin[int(command.argv[-1]):])


def begin_agent(fleet, target, source: str = AGENT_SOURCE):
    """An agent started on ``target`` ahead of its request (a :class:`~smship.ssh.fleet.Begun`): sudo,
    the interpreter and the program's imports run while smship still works out what to ask it."""
    return fleet.begin(target, _program_command(source))


class AgentsAhead:
    """Agents begun in the background on some hosts, all at once, each taken by the request it was begun
    for, or cancelled (its agent then reads an empty request and exits, having changed nothing)."""

    def __init__(self, fleet, targets) -> None:
        targets = list(targets)
        self._begun: dict[str, Any] = {}
        self._ready = {target.name: threading.Event() for target in targets}
        # Never joined: take and cancel wait on each host's event (see smship.ahead.Ahead for why not a join).
        threading.Thread(target=self._begin, args=(fleet, targets), daemon=True, name="smship-agents-ahead").start()

    def _begin(self, fleet, targets) -> None:
        def one(target) -> None:
            try:
                self._begun[target.name] = begin_agent(fleet, target)
            except Exception:   # none begun there: its request goes the ordinary way, and says what fails
                pass
            finally:
                self._ready[target.name].set()
        try:
            fleet.map(one, targets)
        finally:
            for ready in self._ready.values():
                ready.set()

    def take(self, name: str):
        """The agent begun on ``name`` (None: none was), for one request; waits for that host's only."""
        ready = self._ready.get(name)
        if ready is None:
            return None
        ready.wait()
        return self._begun.pop(name, None)

    def cancel(self) -> None:
        for ready in self._ready.values():      # not the thread's join: see smship.ahead.Ahead
            ready.wait()
        for begun in self._begun.values():
            begun.cancel()
        self._begun.clear()


def call_agent(fleet, target, request: dict[str, Any], timeout: float = 900,
               source: str = AGENT_SOURCE, read_only: bool = False, begun=None) -> dict[str, Any]:
    """Run one agent request on ``target`` (through ``begun``, an agent of ``source`` begun ahead, when
    given); a failure raises :class:`SmshipError` naming the host.

    A ``read_only`` request whose agent was lost (no exit status, or its connection gone: the next
    request opens a new one) is asked once more: it changed nothing, so asking again is safe, and a
    lost process is seldom lost twice.
    """
    if begun is not None:
        tail, description = _request_tail(request)
        result = begun.finish(tail, timeout=timeout, description=description)
    else:
        result = fleet.run(target, agent_command(request, source), timeout=timeout)
    if read_only and result.lost:
        result = fleet.run(target, agent_command(request, source), timeout=timeout)
    if not result.ok:
        raise SmshipError(result.summary())
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise SmshipError(f"{target.name}: the smship agent answered something that is not JSON: "
                          f"{result.stdout[:200]!r}") from None
