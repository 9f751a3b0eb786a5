"""Whether Postgres and Redis refuse a stranger, asked from outside the db host.

Two vantage points that are not app hosts: the machine running smship, and
each lb host (inside the fleet's private network, where a cloud's own
firewall no longer helps). From either, a connection to the db host's
Postgres or Redis port must not open.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from smship.command import script
from smship.firewall import data_ports
from smship.hostroles import is_app_host
from smship.ssh import Fleet

OPEN, CLOSED, ERROR = "open", "closed", "error"
TIMEOUT = 3.0

# Runs on a fleet host: prints "open", or "closed <why>".
_REMOTE = ('exec python3 -c \'import socket, sys\n'
           'try:\n'
           '    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n'
           '    print("open")\n'
           'except OSError as exc:\n'
           '    print("closed", exc.strerror or type(exc).__name__)\n\' "$@"')


@dataclass(frozen=True)
class Reach:
    source: str          # "this machine" or a host's name
    target: str          # "db1:5432"
    outcome: str         # OPEN or CLOSED
    detail: str = ""


def _outcome(line: str) -> tuple[str, str]:
    word, _, detail = line.strip().partition(" ")
    return (OPEN, "") if word == OPEN else (CLOSED, detail or "no answer")


def from_here(address: str, port: int, timeout: float = TIMEOUT) -> tuple[str, str]:
    try:
        socket.create_connection((address, port), timeout=timeout).close()
    except OSError as exc:
        return CLOSED, exc.strerror or type(exc).__name__
    return OPEN, ""


def probe(ctx, fleet: Fleet, reachable: set[str]) -> list[Reach]:
    """Every (vantage point, db port) pair, tried once."""
    env = ctx.env
    found: list[Reach] = []
    for db in env.hosts_with("db"):
        for port in data_ports(env):
            target = f"{db.name}:{port}"
            found.append(Reach("this machine", target, *from_here(db.address, port)))
            for lb in env.hosts_with("lb"):
                if lb.name not in reachable or is_app_host(lb) or lb.name == db.name:
                    continue
                result = fleet.run(lb.name, script(_REMOTE, args=(db.address, str(port), str(TIMEOUT)),
                                                   description=f"connect to {target}"), timeout=30)
                found.append(Reach(lb.name, target, *_outcome(result.stdout)) if result.ok
                             else Reach(lb.name, target, ERROR, result.summary()))
    return found
