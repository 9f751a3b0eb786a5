"""Which key generation each host holds, named by fingerprints, never by value.

A host holds a generation in two places: its env file (what the next start
reads) and the environment of each running unit's main process (what it
signs with now). The agent hashes both on the host; only 12 hex digits of a
domain-separated hash travel back.
"""

from __future__ import annotations

from dataclasses import dataclass

from smship.hostroles import app_units
from smship.inventory import Host
from smship.layout import Layout
from smship.remote import client as agent
from smship.remote.agent import key_fingerprint
from smship.ssh import Fleet, Target

__all__ = ["HostKey", "Names", "key_fingerprint", "probe"]


# A host's generations: the live release, the env file's and each unit's fingerprint.
HostKey = agent.KeyState


@dataclass
class Names:
    """Words for fingerprints: the backend's current and previous key."""
    current: str | None
    previous: str | None

    def of(self, fingerprint: str | None) -> str:
        if fingerprint is None:
            return "no key"
        if fingerprint == self.current:
            return f"{fingerprint} (current key)"
        if fingerprint == self.previous:
            return f"{fingerprint} (previous key)"
        return f"{fingerprint} (a key the backend no longer has)"

    def describe(self, host: HostKey) -> str:
        running = host.running()
        if host.holds(host.file):
            return f"runs {self.of(host.file)}" if running else f"env file has {self.of(host.file)}, no unit running"
        stale = sorted(u for u, s in host.units.items() if s.running and s.fingerprint != host.file)
        return (f"env file has {self.of(host.file)}, but {', '.join(stale)} {'is' if len(stale) == 1 else 'are'} "
                "still running on " + " / ".join(sorted(self.of(f) for f in running if f != host.file)))


def probe(fleet: Fleet, targets: list[Target], hosts: dict[str, Host], layout: Layout,
          name: str):
    """One round trip per host: a FleetResult of :class:`HostKey`."""
    return agent.ask_all(fleet, lambda t: agent.keystate(
        name, layout.root, layout.env_file, app_units(layout, hosts[t.name].roles), timeout=60,
        web=layout.web_slots() if "web" in hosts[t.name].roles else None,
        worker=layout.worker_slots() if "worker" in hosts[t.name].roles else None), targets)
