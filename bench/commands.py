"""What one remote command costs through smship's SSH layer, on a running lab.

    SMSHIP_INVENTORY=/var/lib/smship/lab/inventory.yml sudo -E .venv/bin/python bench/commands.py [--host lab2]

Over one connection (opened first, not counted), each kind of command runs
``--count`` times in a row: a bare ``true``, ``sudo true``, ``python3 -c pass``,
and an agent request (``inspect``), asked the ordinary way and through an agent
begun ahead (its start-up not waited for). Per command: the wall time smship
waits, smship's own CPU, and the CPU the lab host spent (its cgroup's
``usage_usec``, when this machine runs the lab). A Markdown table on stdout;
run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from smship.command import Command  # noqa: E402
from smship.context import EnvContext, open_fleet  # noqa: E402
from smship.remote import begin_agent  # noqa: E402
from smship.remote import client as agent  # noqa: E402
from smship.steps.lock import lock_path  # noqa: E402


def host_cgroup(name: str) -> Path | None:
    """The lab host's cgroup (smship's lab runs each host under smship-lab/BRIDGE/NAME)."""
    found = sorted(Path("/sys/fs/cgroup").glob(f"**/smship-lab/*/{name}/cpu.stat"))
    return found[0].parent if found else None


def cpu_usec(cgroup: Path | None) -> int | None:
    if cgroup is None:
        return None
    for line in (cgroup / "cpu.stat").read_text().splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1])
    return None


def lab_arguments(parser: argparse.ArgumentParser, count: str, most: int) -> tuple[argparse.Namespace, str]:
    """The parsed arguments, and the running lab's inventory (``SMSHIP_INVENTORY``); the option named
    ``count`` must be 1 to ``most``."""
    args = parser.parse_args()
    inventory = os.environ.get("SMSHIP_INVENTORY")
    if not inventory:
        parser.error("SMSHIP_INVENTORY must name a running lab's inventory")
    if not 1 <= getattr(args, count) <= most:
        parser.error(f"--{count} must be 1-{most}")
    return args, inventory


def measure(count: int, cgroup: Path | None, once) -> tuple[float, float, float | None]:
    """Mean wall ms, smship CPU ms and host CPU ms of ``once()``."""
    host_before, cpu_before, began = cpu_usec(cgroup), time.process_time(), time.perf_counter()
    for _ in range(count):
        once()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_before
    time.sleep(0.2)   # the host's last exits are counted
    host_after = cpu_usec(cgroup)
    host = None if host_before is None or host_after is None else (host_after - host_before) / 1000 / count
    return wall / count * 1000, cpu / count * 1000, host


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="lab", help="the inventory's environment (default: lab)")
    parser.add_argument("--host", help="the host to ask (default: the environment's second, else first)")
    parser.add_argument("--count", type=int, default=20, help="commands of each kind (default: 20)")
    args, inventory = lab_arguments(parser, "count", 1000)
    ctx = EnvContext.open(args.env, inventory)
    names = [h.name for h in ctx.env.hosts]
    name = args.host or names[min(1, len(names) - 1)]
    if name not in names:
        parser.error(f"{name} is not a host of {args.env}: {', '.join(names)}")
    layout, cgroup = ctx.layout, host_cgroup(name)
    inspect = agent.inspect(layout.root, lock_path(layout))
    with open_fleet(ctx) as fleet:
        target = fleet.targets[name]
        fleet.run(target, Command(("true",)), check=True)

        def ahead():
            begun = begin_agent(fleet, target)
            time.sleep(0.1)        # smship's own work meanwhile: not counted below
            began = time.perf_counter()
            agent.call_agent(fleet, target, inspect.body(), begun=begun)
            return time.perf_counter() - began

        kinds = [("true", lambda: fleet.run(target, Command(("true",)), check=True)),
                 ("sudo true", lambda: fleet.run(target, Command(("true",), sudo=True), check=True)),
                 ("python3 -c pass", lambda: fleet.run(target, Command(("python3", "-c", "pass")), check=True)),
                 ("agent inspect", lambda: agent.ask(fleet, target, inspect))]
        rows = [(kind, *measure(args.count, cgroup, once)) for kind, once in kinds]
        waits = [ahead() for _ in range(args.count)]
    print(f"| {name}, {args.count} each | wall ms | smship CPU ms | host CPU ms |")
    print("|---|---|---|---|")
    for kind, wall, cpu, host in rows:
        print(f"| {kind} | {wall:.1f} | {cpu:.1f} | {'' if host is None else f'{host:.1f}'} |")
    print(f"| agent inspect, begun 0.1 s ahead (wait only) | {sum(waits) / len(waits) * 1000:.1f} |  |  |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
