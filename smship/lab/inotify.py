"""The kernel's inotify limits, raised for as many hosts as the labs on this machine run.

Every host's systemd, journald and services take inotify instances and watches
from root's own allowance (the hosts share the machine's root: no user
namespaces). With ``fs.inotify.max_user_instances`` at 128, the 22nd host
failed to boot ("Failed to allocate manager object"). A lab raises both limits
to what the machine had plus what all running labs' hosts need, and the last
lab to go down puts the machine's values back, as for ``ip_forward``.
"""

from __future__ import annotations

import json
from pathlib import Path

from smship.lab import network

INOTIFY = Path("/proc/sys/fs/inotify")
# Machine-wide, shared by every lab: the values before the first lab raised them,
# and one file per lab bridge holding how many hosts that lab runs.
LEDGER = Path("/run/smship-lab/inotify")
# Measured need of one host is about 6 instances (128 ran 21 hosts beside the
# machine's own); the rest is room for the app's services and a reboot.
PER_HOST = {"max_user_instances": 16, "max_user_watches": 8192}


def read(proc: Path | None = None) -> dict[str, int]:
    proc = proc or INOTIFY
    return {key: int((proc / key).read_text()) for key in PER_HOST}


def needed(before: dict[str, int], hosts: int) -> dict[str, int]:
    """The limits ``hosts`` lab hosts need on top of what the machine had (``before``)."""
    return {key: before[key] + per_host * hosts for key, per_host in PER_HOST.items()}


def _labs(ledger: Path) -> dict[str, int]:
    """Hosts per running lab (its bridge still exists), by bridge."""
    if not ledger.is_dir():
        return {}
    return {p.name[4:]: int(p.read_text() or 0) for p in ledger.glob("lab-*") if network.link_exists(p.name[4:])}


def claim(bridge: str, hosts: int, ledger: Path | None = None, proc: Path | None = None) -> dict[str, int]:
    """Record that the lab on ``bridge`` runs ``hosts`` hosts and raise the limits (never lower
    them) for every running lab's hosts; returns the machine's values from before any lab."""
    ledger, proc = ledger or LEDGER, proc or INOTIFY
    ledger.mkdir(parents=True, exist_ok=True)
    original = ledger / "original"
    current = read(proc)
    if not original.is_file():
        original.write_text(json.dumps(current) + "\n")
    before = json.loads(original.read_text())
    (ledger / f"lab-{bridge}").write_text(f"{hosts}\n")
    labs = _labs(ledger)
    labs[bridge] = hosts
    for key, value in needed(before, sum(labs.values())).items():
        if current[key] < value:
            (proc / key).write_text(f"{value}\n")
    return before


def release(bridge: str, ledger: Path | None = None, proc: Path | None = None,
            fallback: dict[str, int] | None = None) -> dict[str, int] | None:
    """The lab on ``bridge`` is gone. When no other lab runs, put back the values from before
    the first lab (or ``fallback``); returns the values restored, if any changed."""
    ledger, proc = ledger or LEDGER, proc or INOTIFY
    original = network.leave_ledger(ledger, bridge)
    if original is None:
        return None
    before = json.loads(original) if original else fallback
    if not before:
        return None
    changed = {key: value for key, value in before.items() if read(proc)[key] != value}
    for key, value in changed.items():
        (proc / key).write_text(f"{value}\n")
    return changed or None
