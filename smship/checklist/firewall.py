"""Whether Postgres, PgBouncer, Redis and the log collector refuse a stranger, asked from outside.

Two vantage points that are not app hosts: the machine running smship, and
each lb host (inside the fleet's private network, where a cloud's own
firewall no longer helps). From either, a connection to the db host's
Postgres, PgBouncer or Redis port, or to the log collector's, must not open.
"""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from smship.command import script
from smship.firewall import data_ports
from smship.hostroles import is_app_host
from smship.inventory import Host
from smship.logship import collector_of
from smship.ssh import Fleet

OPEN, CLOSED, ERROR = "open", "closed", "error"
HERE = "this machine"
TIMEOUT = 3.0

# Runs on a fleet host: argv is TIMEOUT then ADDRESS PORT pairs, tried at once;
# one line per pair, in order: "open", or "closed <why>".
_REMOTE = ("exec python3 -c '" + """
import socket, sys, threading
timeout, pairs = float(sys.argv[1]), sys.argv[2:]
said = [None] * (len(pairs) // 2)
def attempt(i):
    try:
        socket.create_connection((pairs[2 * i], int(pairs[2 * i + 1])), timeout=timeout).close()
        said[i] = "open"
    except OSError as exc:
        said[i] = "closed " + (exc.strerror or type(exc).__name__)
threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(said))]
[t.start() for t in threads]
[t.join() for t in threads]
print("\\n".join(said))
""" + "' \"$@\"")


@dataclass(frozen=True)
class Reach:
    source: str          # HERE or a host's name
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


def source_address(address: str, port: int) -> str | None:
    """The address this machine would connect to ``address`` from (no packet is sent)."""
    try:
        family = socket.getaddrinfo(address, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family[0], socket.SOCK_DGRAM) as udp:
            udp.connect(family[4])
            return udp.getsockname()[0]
    except OSError:
        return None


def closed_ports(env) -> list[tuple[Host, int]]:
    """Each (host, port) only the app hosts may reach: the db host's data ports, the log collector's port."""
    found = [(db, port) for db in env.hosts_with("db") for port in data_ports(env)]
    collector = collector_of(env)
    if collector is not None:
        found.append((collector, env.logs.port))
    return found


def _attempts(ctx, reachable: set[str]) -> list[tuple[str, str, str, int]]:
    """(vantage point, target label, address, port) for each closed port, from each stranger."""
    env = ctx.env
    apps = {h.address for h in env.hosts if is_app_host(h)}
    found = []
    for host, port in closed_ports(env):
        # Run from an app host, this machine is no stranger: it is admitted, rightly.
        if source_address(host.address, port) not in apps:
            found.append((HERE, f"{host.name}:{port}", host.address, port))
        found += [(lb.name, f"{host.name}:{port}", host.address, port) for lb in env.hosts_with("lb")
                  if lb.name in reachable and not is_app_host(lb) and lb.name != host.name]
    return found


def _from_host(fleet: Fleet, source: str, mine: list[tuple[str, str, int]]) -> list[Reach]:
    """One round trip: ``source`` tries every (target, address, port) of ``mine`` at once."""
    args = [str(TIMEOUT)] + [word for _, address, port in mine for word in (address, str(port))]
    result = fleet.run(source, script(_REMOTE, args=args, description="connect to the ports only app hosts may reach"),
                       timeout=30)
    lines = result.stdout.splitlines()
    if not result.ok or len(lines) != len(mine):
        return [Reach(source, target, ERROR, result.summary()) for target, _, _ in mine]
    return [Reach(source, target, *_outcome(line)) for (target, _, _), line in zip(mine, lines)]


def probe(ctx, fleet: Fleet, reachable: set[str]) -> list[Reach]:
    """Every (vantage point, db port) pair, tried once, all at once (a dropped one costs TIMEOUT)."""
    attempts = _attempts(ctx, reachable)
    if not attempts:
        return []
    here = [(target, address, port) for source, target, address, port in attempts if source == HERE]
    hosts = {source: [(t, a, p) for s, t, a, p in attempts if s == source]
             for source, *_ in attempts if source != HERE}
    with ThreadPoolExecutor(max_workers=len(here) + len(hosts)) as pool:
        local = [(target, pool.submit(from_here, address, port)) for target, address, port in here]
        remote = [pool.submit(_from_host, fleet, source, mine) for source, mine in hosts.items()]
        return ([Reach(HERE, target, *f.result()) for target, f in local]
                + [r for f in remote for r in f.result()])
