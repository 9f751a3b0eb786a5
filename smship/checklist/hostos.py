"""The ``hosts-os`` check: each host's distribution, and whether smship is tested on it."""

from __future__ import annotations

from smship.hostos import SUPPORTED
from smship.remote.client import OSRelease

PASS, WARN, FAIL = "pass", "warn", "fail"
TESTED = ", ".join(f"Debian {version} ({codename})" for (_, version), codename in SUPPORTED.items())


def _label(os_facts: OSRelease) -> str:
    return os_facts.name or f"{os_facts.id} {os_facts.version_id}".strip()


def hosts_os(facts):
    """Supported distributions pass, others warn; app hosts on different Pythons fail."""
    found = {name: answer.os for name, answer in facts.hosts.items()}
    if not found:
        return WARN, "no host answered", "see the unreachable hosts above"
    if any(value is None for value in found.values()):
        return WARN, "a host's smship agent did not say which distribution it runs", "run a current smship"
    groups: dict[str, list[str]] = {}
    for name, os_facts in found.items():
        supported = (os_facts.id, os_facts.version_id) in SUPPORTED
        groups.setdefault(f"{_label(os_facts)}, {'supported' if supported else 'not tested by smship'}",
                          []).append(name)
    reason = "; ".join(f"{', '.join(names)}: {label}" for label, names in groups.items())
    pythons: dict[str, list[str]] = {}
    for host in facts.app_hosts():
        os_facts = found.get(host.name)
        version = os_facts.python if os_facts else None
        if version:
            pythons.setdefault(".".join(version.split(".")[:2]), []).append(host.name)
    if len(pythons) > 1:
        listing = "; ".join(f"{', '.join(names)}: Python {version}" for version, names in pythons.items())
        return FAIL, f"{reason}; the app hosts mix Python versions ({listing})", \
            "put the app hosts on one Debian release (a release's wheels fit one Python), or set app.python " \
            "to a version every host's distribution offers"
    if any(label.endswith("not tested by smship") for label in groups):
        return WARN, reason, f"smship is tested on {TESTED}; other releases may work but nothing proves it"
    return PASS, reason, ""
