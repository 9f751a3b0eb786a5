"""smship's benchmark: how fast and how safely it moves a lab fleet of 1, 3, ... N hosts.

    sudo python bench/run.py --hosts 1,3        # a table on stdout; progress on stderr
    sudo python bench/run.py --hosts 6 --json results.json

For each fleet size it boots a lab (where SMSHIP_LAB_DIR, SMSHIP_LAB_BRIDGE and
SMSHIP_LAB_SUBNET say, as `smship lab up` does), provisions it, then measures: the first
(full) deploy, a deploy with one changed Python file, a no-op deploy, a deploy
whose release fails its health gate, a no-op provision, a rollback, a secret
rotation, status, and the physical floor of the same work. Steady clients (GET
and POST, through the lb and straight at a web host) run through the restarts;
with matplotlib installed (pip install -e '.[bench]'), --plots draws their
latency over time per case, the command's steps marked.
The lab is torn down after each size, also on failure or Ctrl-C.
See bench/README.md for the method.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "lab"), str(ROOT / "bench")]
# smship as installed: pip writes bytecode, and so does Python on smship's first run. A shell
# that turns bytecode off would time the compiling of smship's sources on every command.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

from floor import floor_seconds  # noqa: E402
from labkit import ENV, SteadyClient, app_variant, git, run_smship  # noqa: E402
from plot import draw  # noqa: E402
from table import render  # noqa: E402


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def client_addresses(lab) -> dict[str, str]:
    """Where clients come in: through the load balancer (lab1, from three hosts on) and straight at
    the first web host (the last host of a smaller lab, which carries every role)."""
    hosts = lab.hosts
    return ({"lb": hosts[0][1]} if len(hosts) >= 3 else {}) | {"direct": hosts[1][1] if len(hosts) >= 3 else hosts[-1][1]}


def steady_clients(lab, stack: ExitStack) -> dict[str, SteadyClient]:
    """A GET and a POST client per way in; the POST one is a request no proxy may repeat."""
    clients = {}
    for way, address in client_addresses(lab).items():
        clients[f"{way} GET"] = stack.enter_context(SteadyClient(address))
        clients[f"{way} POST"] = stack.enter_context(SteadyClient(address, path="/session", interval=0.05,
                                                                  post={"name": "bench"}))
    return clients


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(case: str, argv: list[str], inventory: Path, lab, loaded: bool = False, fails: bool = False) -> dict:
    """Run ``smship ARGV -o json`` (with steady clients when ``loaded``) and keep its figures;
    ``fails``: the command is meant to fail (a release that fails its gate)."""
    say(f"{len(lab.hosts)} host(s): {case}")
    with ExitStack() as stack:
        clients = steady_clients(lab, stack) if loaded else {}
        clients_rate = None
        if clients:
            time.sleep(1)
            # What serving the steady clients alone costs the hosts, per second: the command's own
            # CPU is the rest (the floor is measured without clients).
            idle_before, idle_began = lab.cpu_seconds(), time.monotonic()
            time.sleep(2)
            idle_after = lab.cpu_seconds()
            if idle_before is not None and idle_after is not None:
                clients_rate = (idle_after - idle_before) / (time.monotonic() - idle_began)
        hosts_before = lab.cpu_seconds()
        began, started, used = time.monotonic(), time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        run = run_smship(*argv, "-o", "json", inventory=inventory, timeout=3600)
        wall, after = time.monotonic() - began, resource.getrusage(resource.RUSAGE_CHILDREN)
        hosts_after = lab.cpu_seconds()
    # smship is the only child process waited for meanwhile (the steady client is a thread):
    # its CPU is the difference; the peak memory is the largest child's so far (KiB on Linux).
    row = {"case": case, "hosts": len(lab.hosts), "ok": (run.returncode != 0) == fails, "wall": wall,
           "cpu": (after.ru_utime + after.ru_stime) - (used.ru_utime + used.ru_stime),
           "peak_rss_mb": after.ru_maxrss / 1024,
           "hosts_cpu": None if hosts_before is None or hosts_after is None else hosts_after - hosts_before,
           "cores": os.cpu_count(), "clients_cpu_rate": clients_rate}
    try:
        document = run.document
    except (ValueError, IndexError):
        document = {}
    if not row["ok"]:
        say(f"{case} did not go as meant:\n{run.stderr[-3000:]}")
    row["phases"] = document.get("phases", {})
    row["batches"] = document.get("batches", [])
    trips = document.get("round_trips", {})
    row["round_trips"] = (min(trips.values()), max(trips.values())) if trips else None
    shipped = [r["details"]["bytes_sent"] for r in document.get("hosts", []) if "bytes_sent" in r.get("details", {})]
    row["bytes_per_host"] = max(shipped) if shipped else None
    row["release"] = document.get("release")
    if clients:
        row["requests"] = sum(c.total for c in clients.values())
        row["failed"] = sum(len(c.failures) for c in clients.values())
        row["failures"] = [f for c in clients.values() for f in c.failures][:3]
        latencies = [s for c in clients.values() for s in c.latencies]
        row["p99_ms"] = round(1000 * percentile(latencies, 0.99), 1) if latencies else None
        for way in client_addresses(lab):
            mine = [s for name, c in clients.items() if name.startswith(way) for s in c.latencies]
            row[f"max_ms_{way}"] = round(1000 * max(mine), 1) if mine else None
        row["samples"] = {name: c.samples for name, c in clients.items()}
        row["timeline"] = document.get("timeline", [])
        row["started"] = started
    return row


def bench_fleet(size: int, image: str, distro: str = "trixie", batch_size: str | None = None,
                max_connections: int | None = None) -> list[dict]:
    from smship.lab import Lab

    lab = Lab()  # $SMSHIP_LAB_DIR, _BRIDGE and _SUBNET choose which
    work = lab.dir.parent / f"{lab.dir.name}-work"
    shutil.rmtree(work, ignore_errors=True)
    rows: list[dict] = []
    try:
        say(f"booting {size} host(s) ({image} image, Debian {distro})")
        lab.up(hosts=size, image_name=image, app=ROOT / "examples" / "smpy-app", distro=distro)
        inventory = inventory_for(lab, work / "app", batch_size, max_connections)
        say("first provision (not part of the table)")
        first = run_smship("provision", ENV, inventory=inventory, timeout=3600)
        if first.returncode != 0:
            raise SystemExit(f"provisioning failed:\n{first.output[-3000:]}")

        full = measure("full deploy", ["deploy", ENV], inventory, lab)
        rows.append(full)
        # The floor ships the same bytes; keep them, as the build cache keeps only its newest builds.
        release = full.get("release") or {}
        if release:
            shutil.copytree(release["path"], work / "release", symlinks=True)
            shutil.copytree(release["wheels"], work / "wheels", symlinks=True)
        rows.append(measure("no-op provision", ["provision", ENV], inventory, lab))
        app_variant(work / "app", files={"refapp/bench_marker.py": f"STAMP = {time.time()!r}\n"},
                    message="one changed file")
        rows.append(measure("one changed .py", ["deploy", ENV], inventory, lab, loaded=True))
        rows.append(measure("no-op deploy", ["deploy", ENV], inventory, lab, loaded=True))
        app_variant(work / "app", edits={"refapp/web.py": [('        return {"status": worst, "checks": results}',
                                                            '        return {"status": "unhealthy", "checks": results}')]},
                    message="a release that fails its gate")
        rows.append(measure("failed deploy", ["deploy", ENV], inventory, lab, loaded=True, fails=True))
        git(work / "app", "revert", "--no-edit", "HEAD")
        rows.append(measure("rollback", ["rollback", ENV], inventory, lab, loaded=True))
        rows.append(measure("rotate-secret", ["rotate-secret", ENV], inventory, lab, loaded=True))
        rows.append(measure("status", ["status", ENV], inventory, lab))

        say("physical floor")
        if release:
            floors = floor_seconds(lab, str(work / "release"), str(work / "wheels"), batch_size or 1)
            for row in rows:
                row["floor"] = floors.get(row["case"])
            parts = floors["parts"]
            say("floor parts: " + ", ".join(f"{k} {[round(x, 2) for x in v] if isinstance(v, list) else round(v, 2)}"
                                            for k, v in parts.items()))
            rows[0]["floor_parts"] = parts
    finally:
        say("tearing the lab down")
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def inventory_for(lab, repo: Path, batch_size: str | None = None, max_connections: int | None = None) -> Path:
    """The lab's inventory, pointing at a scratch git copy of the reference app (so a file can change)."""
    import yaml

    app_variant(repo, message="bench base")
    data = yaml.safe_load(Path(lab.inventory).read_text())
    data["app"]["source"] = str(repo)
    if batch_size:
        data["environments"][ENV].setdefault("web", {})["batch_size"] = batch_size
    if max_connections:
        data["environments"][ENV].setdefault("db", {})["max_connections"] = max_connections
    path = repo.parent / "smship.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,3", help="fleet sizes, comma separated (default 1,3)")
    parser.add_argument("--image", default="fat", help="lab image (default fat: packages baked in)")
    parser.add_argument("--distro", default="trixie", choices=("trixie", "bookworm"),
                        help="Debian release of the hosts (default trixie, Debian 13)")
    parser.add_argument("--batch-size", help="the inventory's web.batch_size, e.g. 25%% (default: the lab's)")
    parser.add_argument("--db-max-connections", type=int,
                        help="the inventory's db.max_connections: a large fleet outgrows Postgres' default 100")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--plots", type=Path, help="draw each loaded case's client latencies into this directory "
                                                    "(PNG; needs matplotlib: pip install -e '.[bench]')")
    args = parser.parse_args()
    rows: list[dict] = []
    for size in [int(n) for n in args.hosts.split(",")]:
        rows += bench_fleet(size, args.image, args.distro, args.batch_size, args.db_max_connections)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2, default=str))
        if args.plots:
            for path in draw(rows, args.plots, suffix=args.batch_size):
                say(f"drew {path}")
    print(render(rows))


if __name__ == "__main__":
    main()
