"""Two versions of smship, alternately, for one command on a running lab: which costs less.

    git worktree add /tmp/before HEAD~3
    SMSHIP_INVENTORY=/var/lib/smship/lab/inventory.yml sudo -E .venv/bin/python bench/alternate.py \\
        --before /tmp/before --after . --runs 10 -- provision lab

Each run starts smship from one checkout's source (neither the installed
package nor the working directory), before then after, ``--runs`` times. Per
version, the median of: the wall time, smship's own CPU (user and system of
the process), and the CPU all the inventory's lab hosts spent meanwhile (their
cgroups' ``usage_usec``: what the command made them do, and whatever else they
ran then). A Markdown table on stdout; the command's own output is not shown.
Alternating spreads a noisy machine's hours over both; run it alone all the
same.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from commands import cpu_usec, host_cgroup, lab_arguments  # noqa: E402
from smship.context import EnvContext  # noqa: E402

# Runs smship from the checkout named first: the checkout's source before anything installed.
RUNNER = """\
import sys
checkout = sys.argv.pop(1)
sys.path[:] = [checkout] + [p for p in sys.path[1:] if p not in ("", ".")]
import smship
if not smship.__file__.startswith(checkout):
    sys.exit("smship came from %s, not %s" % (smship.__file__, checkout))
from smship.cli import main
sys.argv[0] = "smship"
main()
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def hosts_usec(cgroups: list[Path]) -> int:
    return sum(cpu_usec(cgroup) or 0 for cgroup in cgroups)


def run_once(checkout: Path, command: list[str], cgroups: list[Path]) -> tuple[float, float, float]:
    """Wall ms, smship CPU ms, hosts CPU ms of one run; a failed run stops the comparison."""
    hosts_before, cpu_before, began = hosts_usec(cgroups), children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUNNER, str(checkout), *command],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: smship {' '.join(command)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return wall * 1000, (children_cpu() - cpu_before) * 1000, (hosts_usec(cgroups) - hosts_before) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, type=Path, help="a checkout of smship (its top directory)")
    parser.add_argument("--after", required=True, type=Path, help="another checkout")
    parser.add_argument("--runs", type=int, default=10, help="runs of each version (default: 10)")
    parser.add_argument("--env", default="lab", help="the inventory's environment, for its hosts (default: lab)")
    parser.add_argument("command", nargs="+", help="smship's arguments, after --")
    args, inventory = lab_arguments(parser, "runs", 200)
    versions = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, checkout in versions.items():
        if not (checkout / "smship" / "cli.py").is_file():
            parser.error(f"--{name} {checkout} is not a checkout of smship")
    hosts = [host.name for host in EnvContext.open(args.env, inventory).env.hosts]
    cgroups = [cgroup for cgroup in map(host_cgroup, hosts) if cgroup is not None]
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in versions}
    for _ in range(args.runs):
        for name, checkout in versions.items():
            runs[name].append(run_once(checkout, args.command, cgroups))
    print(f"smship {' '.join(args.command)}: {len(hosts)} hosts ({len(cgroups)} with a cgroup here), "
          f"medians of {args.runs} alternated runs\n")
    print("| version | wall ms | smship CPU ms | hosts CPU ms |")
    print("|---|---|---|---|")
    for name, checkout in versions.items():
        wall, cpu, host = (statistics.median(column) for column in zip(*runs[name]))
        print(f"| {name} ({checkout.name}) | {wall:.0f} | {cpu:.0f} | {host:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
