"""The lab's private network: a bridge, a masquerade rule in the lab's own nftables
table, and IPv4 forwarding (turned on only if it was off, and restored later)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from smship.lab.system import LabError, run

DEFAULT_SUBNET = "192.168.250.0/24"
DEFAULT_BRIDGE = "smshipbr0"
NFT_FAMILY = "ip"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
# Machine-wide record of forwarding, shared by every lab on this machine: one file per
# lab bridge that needs forwarding, and the value before the first lab turned it on.
FORWARD_LEDGER = Path("/run/smship-lab/ip_forward")
FIRST_HOST_OFFSET = 11       # hosts at .11, .12, ...

_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")


@dataclass(frozen=True)
class NetworkPlan:
    """Addresses of one lab network, computed without touching the machine."""

    bridge: str
    subnet: ipaddress.IPv4Network

    @classmethod
    def make(cls, bridge: str = DEFAULT_BRIDGE, subnet: str = DEFAULT_SUBNET) -> "NetworkPlan":
        if not _IFNAME.fullmatch(bridge):
            raise LabError(f"bridge name {bridge!r} is not a valid interface name "
                           "(letters, digits, _.-; at most 15 characters)")
        try:
            net = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as exc:
            raise LabError(f"lab subnet {subnet!r} is not an IPv4 network such as "
                           f"{DEFAULT_SUBNET}: {exc}") from exc
        if net.prefixlen > 26:
            raise LabError(f"lab subnet {subnet} is too small; use a /24 or larger")
        if not net.is_private:
            raise LabError(f"lab subnet {subnet} is not a private range")
        return cls(bridge, net)

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 1

    @property
    def nft_table(self) -> str:
        # One table per bridge so two labs never touch each other's rules.
        return "smship_lab_" + re.sub(r"[^A-Za-z0-9_]", "_", self.bridge)

    def address(self, index: int) -> ipaddress.IPv4Address:
        """Address of host number ``index`` (1-based)."""
        addr = self.subnet.network_address + FIRST_HOST_OFFSET + index - 1
        if addr not in self.subnet or addr == self.subnet.broadcast_address:
            raise LabError(f"subnet {self.subnet} has no room for host number {index}")
        return addr

    def nft_ruleset(self) -> str:
        """The lab's nftables table: masquerade traffic leaving the lab subnet.

        Values here come from validated objects (an IPv4Network and a name made of
        [A-Za-z0-9_]), never from raw strings.
        """
        net = str(self.subnet)
        return (
            f"table {NFT_FAMILY} {self.nft_table} {{\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            f"    ip saddr {net} ip daddr != {net} masquerade\n"
            "  }\n"
            "}\n"
        )


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def nft_table_exists(table: str) -> bool:
    proc = run(["nft", "list", "table", NFT_FAMILY, table], check=False)
    return proc.returncode == 0


def read_ip_forward() -> str:
    return IP_FORWARD.read_text().strip()


def write_ip_forward(value: str) -> None:
    IP_FORWARD.write_text(value + "\n")


def up(plan: NetworkPlan) -> dict:
    """Create bridge, NAT and forwarding. Returns what was changed (for the state file)."""
    changed: dict = {"bridge": plan.bridge, "nft_table": plan.nft_table,
                     "ip_forward_before": None}
    if link_exists(plan.bridge):
        raise LabError(f"interface {plan.bridge} already exists and is not the lab's; "
                       "choose another with SMSHIP_LAB_BRIDGE")
    gw_cidr = f"{plan.gateway}/{plan.subnet.prefixlen}"
    run(["ip", "link", "add", "name", plan.bridge, "type", "bridge", "stp_state", "0"])
    run(["ip", "addr", "add", gw_cidr, "dev", plan.bridge])
    run(["ip", "link", "set", plan.bridge, "up"])
    if nft_table_exists(plan.nft_table):
        run(["nft", "delete", "table", NFT_FAMILY, plan.nft_table])
    run(["nft", "-f", "-"], input=plan.nft_ruleset().encode())
    changed["ip_forward_before"] = claim_forwarding(plan.bridge)
    return changed


def claim_forwarding(bridge: str, ledger: Path | None = None) -> str | None:
    """Turn IPv4 forwarding on for a lab; returns the value it had if this changed it."""
    ledger = ledger or FORWARD_LEDGER
    ledger.mkdir(parents=True, exist_ok=True)
    original = ledger / "original"
    before = read_ip_forward()
    if before != "1":
        if not original.exists():
            original.write_text(before + "\n")
        write_ip_forward("1")
    (ledger / f"lab-{bridge}").write_text("")
    return before if before != "1" else None


def leave_ledger(ledger: Path, bridge: str) -> str | None:
    """Take the lab on ``bridge`` off a machine-wide ledger (one ``lab-<bridge>`` file per
    running lab, and ``original``: the machine's value before the first lab). While another
    lab runs, ``None``; after the last, the ledger is removed and its ``original`` returned
    (``""`` when it had none)."""
    (ledger / f"lab-{bridge}").unlink(missing_ok=True)
    if ledger.is_dir() and any(link_exists(p.name[4:]) for p in ledger.glob("lab-*")):
        return None
    original = ledger / "original"
    value = original.read_text().strip() if original.is_file() else ""
    for stale in (ledger.glob("lab-*") if ledger.is_dir() else []):
        stale.unlink(missing_ok=True)
    original.unlink(missing_ok=True)
    for directory in (ledger, ledger.parent):
        try:
            directory.rmdir()
        except OSError:
            pass
    return value


def release_forwarding(bridge: str, ledger: Path | None = None,
                       fallback: str | None = None) -> str | None:
    """A lab no longer needs forwarding. When no other running lab does, put back the
    value from before the first lab (or ``fallback``). Returns the value restored."""
    original = leave_ledger(ledger or FORWARD_LEDGER, bridge)
    if original is None:
        return None
    value = original or fallback
    if value is not None and read_ip_forward() != value:
        write_ip_forward(value)
        return value
    return None


def down(bridge: str, nft_table: str, ip_forward_before: str | None) -> list[str]:
    """Undo :func:`up`; returns what was removed. Missing pieces are not errors."""
    removed = []
    if link_exists(bridge):
        run(["ip", "link", "delete", bridge], check=False)
        removed.append(f"bridge {bridge} removed")
    if nft_table_exists(nft_table):
        run(["nft", "delete", "table", NFT_FAMILY, nft_table], check=False)
        removed.append(f"nftables table {NFT_FAMILY} {nft_table} removed")
    restored = release_forwarding(bridge, fallback=ip_forward_before)
    if restored is not None:
        removed.append(f"ip_forward restored to {restored}")
    return removed
