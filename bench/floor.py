"""The physical floor: the least any tool could spend on the same work on the same lab.

* bytes: the release tree and its wheelhouse copied with one plain ``rsync``
  per host (all hosts at once) into an empty directory, or one small file
  for the incremental case;
* the virtualenv (full deploy only): on every host the app runs on, at once,
  uv unpacked from the wheelhouse's own wheel, ``uv venv`` and ``uv pip
  install`` of the wheelhouse's requirements, offline and byte-compiled, as a
  deploy builds it (without its ``uv pip check``);
* restarts: per web batch (of the inventory's ``web.batch_size``), one
  ``systemctl restart`` and a poll of ``/health/ready`` until it says healthy
  on each of its hosts, batch after batch; then the worker and beat units
  restarted on all their hosts at once;
* a no-op: one SSH round trip per host, all at once.

Deploy figures are read as ratios to these.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from smship.inventory.sections import Web
from smship.lab.files import topology

SCRATCH = "/tmp/smship-floor"
# uv's binary out of its wheel, then the venv from the wheelhouse: what any tool installing
# this wheelhouse offline must do at least.
VENV = """set -eu
wheels=$1
cd /tmp/smship-floor
python3 -c 'import sys, zipfile
w = zipfile.ZipFile(sys.argv[1])
[n] = [n for n in w.namelist() if n.endswith(".data/scripts/uv")]
open("uv", "wb").write(w.read(n))' "$(ls "$wheels"/uv-*.whl)"
chmod 755 uv
./uv venv --no-config --no-cache --offline --quiet --python /usr/bin/python3 venv
./uv pip install --no-config --no-cache --offline --quiet --python venv/bin/python --no-index \
    --find-links "$wheels" --compile-bytecode --link-mode copy -r "$wheels/requirements.txt"
"""
HEALTHY = ("until curl -sk -m 2 -H 'Host: refapp.lab.test' https://127.0.0.1/health/ready "
           "| grep -q '\"status\": *\"healthy\"'; do sleep 0.1; done")


def timed(work) -> float:
    began = time.monotonic()
    work()
    return time.monotonic() - began


def on_all(names: list[str], work) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        for outcome in pool.map(work, names):
            if outcome is not None and outcome.returncode != 0:
                raise RuntimeError(f"floor: {outcome.args}: {outcome.stderr}")


def rsync(lab, name: str, sources: list[Path]) -> subprocess.CompletedProcess:
    argv = ["rsync", "-rlt", "-e", f"ssh -F {lab.ssh_config}", *[str(s) for s in sources],
            f"{name}:{SCRATCH}/"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=1800)


def floor_seconds(lab, release_path: str, wheels_path: str, batch_size: int | str = 1) -> dict[str, float]:
    names = [name for name, _ in lab.hosts]
    roles = dict(zip(names, topology(len(names))))
    web = [n for n in names if "web" in roles[n]]
    background = [n for n in names if {"worker", "beat"} & set(roles[n])]
    app = [n for n in names if {"web", "worker", "beat"} & set(roles[n])]

    def clean(name):
        return lab.ssh(name, ["rm", "-rf", SCRATCH], timeout=120)

    on_all(names, clean)
    full = timed(lambda: on_all(names, lambda n: rsync(lab, n, [Path(release_path), Path(wheels_path)])))
    wheels = f"{SCRATCH}/{Path(wheels_path).name}"
    venv = timed(lambda: on_all(app, lambda n: lab.ssh(n, ["sh", "-c", VENV, "venv", wheels], timeout=1800)))
    one_file = Path(release_path) / "RELEASE_ID"
    small = timed(lambda: on_all(names, lambda n: rsync(lab, n, [one_file])))
    on_all(names, clean)

    def restart_web(name):
        # The serving web slot restarted in place: a new uvicorn's start and readiness, nothing else.
        serving = 'refapp-web@"$(basename "$(readlink /var/www/refapp/web/uvicorn.sock)" .sock)".service'
        return lab.ssh(name, ["sudo", "sh", "-c", f"systemctl restart {serving} && {HEALTHY}"], timeout=300)

    def restart_background(name):
        # The serving worker slot restarted in place, as the web slot is.
        worker = "refapp-worker@\"$(readlink /srv/refapp/worker/live | sed 's/.*slot-//')\".service"
        units = [u for r, u in (("worker", worker), ("beat", "refapp-beat.service")) if r in roles[name]]
        return lab.ssh(name, ["sudo", "sh", "-c", f"systemctl restart {' '.join(units)}"], timeout=300)

    if isinstance(batch_size, str) and batch_size.isdigit():
        batch_size = int(batch_size)
    size = Web(batch_size=batch_size).batch_count(len(web)) if web else 1
    web_batches = [timed(lambda: on_all(web[i:i + size], restart_web)) for i in range(0, len(web), size)]
    background_restart = timed(lambda: on_all(background, restart_background))
    restarts = sum(web_batches) + background_restart
    noop = timed(lambda: on_all(names, lambda n: lab.ssh(n, ["true"])))
    parts = {"rsync": full, "venv": venv, "one file": small, "web batches": web_batches,
             "worker and beat": background_restart, "no-op": noop}
    return {"full deploy": full + venv + restarts, "one changed .py": small + restarts, "no-op deploy": restarts,
            "rollback": restarts, "rotate-secret": restarts, "no-op provision": noop, "parts": parts}
