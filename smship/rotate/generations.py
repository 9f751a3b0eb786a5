"""Which key generation each host holds, named by fingerprints, never by value.

A host holds a generation in two places: its env file (what the next start
reads) and the environment of each running unit's main process (what it
signs with now). The agent hashes both on the host; only 12 hex digits of a
domain-separated hash travel back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smship.hostroles import app_units
from smship.inventory import Host
from smship.layout import Layout
from smship.remote import call_agent
from smship.remote.agent import key_fingerprint
from smship.ssh import Fleet, Target

__all__ = ["HostKey", "Names", "key_fingerprint", "probe"]


@dataclass
class HostKey:
    current: str | None                 # the live release, None before the first deploy
    file: str | None                    # fingerprint in the env file
    units: dict[str, dict] = field(default_factory=dict)   # unit -> {running, fingerprint}

    def running(self) -> set[str | None]:
        return {u["fingerprint"] for u in self.units.values() if u["running"]}

    def holds(self, fingerprint: str | None) -> bool:
        """The env file and every running unit have this generation."""
        return self.file == fingerprint and self.running() <= {fingerprint}


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
        stale = sorted(u for u, s in host.units.items() if s["running"] and s["fingerprint"] != host.file)
        return (f"env file has {self.of(host.file)}, but {', '.join(stale)} {'is' if len(stale) == 1 else 'are'} "
                "still running on " + " / ".join(sorted(self.of(f) for f in running if f != host.file)))


def probe(fleet: Fleet, targets: list[Target], hosts: dict[str, Host], layout: Layout,
          name: str) -> dict[str, HostKey | BaseException]:
    """One round trip per host; an unreachable host gets its exception."""
    def ask(target: Target) -> HostKey:
        answer = call_agent(fleet, target, {"op": "keystate", "name": name, "root": layout.root,
                                            "env_file": layout.env_file,
                                            "units": app_units(layout, hosts[target.name].roles)}, timeout=60)
        return HostKey(answer["current"], answer["file"], answer["units"])
    return fleet.map(ask, targets)
