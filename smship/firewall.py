"""What each host's firewall admits, decided from the inventory alone.

Rendered into ``templates/firewall.nft.j2`` by the ``firewall`` role, and read
by ``smship check`` to know which ports must refuse a stranger.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from smship.hostroles import app_hosts
from smship.inventory import Environment, Host

RULES_PATH = "/etc/smship/firewall.nft"
UNIT = "smship-firewall.service"
REDIS_PORT = 6379
SITE_ROLES = ("web", "lb")


@dataclass(frozen=True)
class HostFirewall:
    ssh_ports: tuple[int, ...]
    serves_site: bool
    data_ports: tuple[int, ...]       # Postgres, PgBouncer (with a pooler) and Redis, on a db host
    log_port: int | None              # the log collector's HTTPS port, on the collector
    app_v4: tuple[str, ...]           # IPv4 addresses and names (nft resolves names when it loads)
    app_v6: tuple[str, ...]


def data_ports(env: Environment) -> tuple[int, ...]:
    pooler = (env.db.pooler.port,) if env.db.pooler else ()
    return (env.db.port, *pooler, REDIS_PORT)


def _is_v6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False


def host_firewall(env: Environment, host: Host, sshd_ports: tuple[int, ...] = ()) -> HostFirewall:
    """``sshd_ports``: where the host's sshd listens, as it said; a port smship reaches through an SSH
    config's ``Port`` alone is one of them, and closing it would lock everyone out."""
    apps = [h.address for h in app_hosts(env.hosts)]
    return HostFirewall(
        ssh_ports=tuple(sorted({22, host.port or env.ssh.port, *sshd_ports})),
        serves_site=bool(set(host.roles) & set(SITE_ROLES)),
        data_ports=data_ports(env) if "db" in host.roles else (),
        log_port=env.logs.port if env.logs is not None and env.logs.collector == host.name else None,
        app_v4=tuple(a for a in apps if not _is_v6(a)),
        app_v6=tuple(a for a in apps if _is_v6(a)))
