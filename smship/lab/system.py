"""Small helpers the lab modules share: errors, running programs, platform checks.

Every program is run from an argv list; nothing is ever passed through a shell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Sequence

# apt package that provides each program the lab runs on the machine.
REQUIRED_TOOLS: dict[str, str] = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "nft": "nftables",
    "zstd": "zstd",
    "tar": "tar",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
    "mount": "mount",
    "umount": "mount",
}

APT_PACKAGES = ("systemd-container", "mmdebstrap", "debootstrap", "nftables", "zstd",
                "rsync", "openssh-client", "iproute2")


class LabError(Exception):
    """A lab operation failed; the message is meant for the user as is."""


def run(argv: Sequence[str], *, check: bool = True, input: bytes | None = None,
        timeout: float | None = 120, capture: bool = True) -> subprocess.CompletedProcess:
    """Run one program; raise :class:`LabError` naming it when it fails and ``check``."""
    try:
        proc = subprocess.run(list(argv), input=input, timeout=timeout,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE if capture else None,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed; {install_hint()}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout} s") from exc
    if check and proc.returncode != 0:
        err = (proc.stderr or b"").decode(errors="replace").strip()
        raise LabError(f"{' '.join(argv)} failed (exit {proc.returncode}): {err[-2000:]}")
    return proc


def install_hint() -> str:
    return "install the lab's tools with: apt-get install -y " + " ".join(APT_PACKAGES)


def missing_tools() -> list[str]:
    """apt packages whose programs are not on PATH."""
    missing = []
    for tool, package in REQUIRED_TOOLS.items():
        if shutil.which(tool) is None and package not in missing:
            missing.append(package)
    return missing


def require_platform(tools: bool = True) -> None:
    """Fail with a plain message unless this is Linux, as root, with the lab's tools."""
    if not sys.platform.startswith("linux"):
        raise LabError("the smship lab needs Linux (it runs hosts as systemd-nspawn "
                       f"containers); this machine is {sys.platform}")
    if os.geteuid() != 0:
        raise LabError("the smship lab needs root (it creates a bridge, nftables rules, "
                       "mounts and containers); run it again as root, e.g. with sudo")
    if tools:
        missing = missing_tools()
        if missing:
            raise LabError("the smship lab needs these apt packages: " + " ".join(missing)
                           + "; " + install_hint())
