"""Running smship itself against a lab, as a user would: helpers for lab tests."""

from __future__ import annotations

import copy
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

ENV = "lab"
# The PostgreSQL each Debian release installs: provisioning must find it from the host alone.
POSTGRES_MAJOR = {"bookworm": 15, "trixie": 17}


def postgres_unit(lab) -> str:
    """The db host's cluster unit on the lab's Debian release."""
    return f"postgresql@{POSTGRES_MAJOR[lab.distro]}-main"


@dataclass
class SmshipRun:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def document(self) -> dict[str, Any]:
        """The ``--output json`` document (the last line of stdout)."""
        return json.loads(self.stdout.strip().splitlines()[-1])

    def statuses(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for report in self.document["hosts"]:
            found.setdefault(report["host"], []).append(report["status"])
        return found

    def __str__(self) -> str:
        return f"$ smship {' '.join(self.argv)}  (exit {self.returncode})\n{self.output}"


def run_smship(*argv: str, inventory: Path, timeout: float = 900, env: dict[str, str] | None = None,
               check: bool | None = None) -> SmshipRun:
    """``smship ARGV -i INVENTORY``; ``check=True`` asserts success, ``False`` failure."""
    words = [*argv, "-i", str(inventory)]
    environment = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "smship", *words], capture_output=True, text=True,
                          timeout=timeout, env=environment)
    result = SmshipRun(words, proc.returncode, proc.stdout, proc.stderr)
    if check is True:
        assert result.returncode == 0, str(result)
    elif check is False:
        assert result.returncode != 0, str(result)
    return result


def write_inventory(lab, directory: Path, change: Callable[[dict], None]) -> Path:
    """A copy of the lab inventory in ``directory`` (its project dir), edited by ``change``."""
    data = copy.deepcopy(yaml.safe_load(Path(lab.inventory).read_text()))
    change(data)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "smship.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def lab_env(data: dict) -> dict:
    return data["environments"][ENV]


def remote(lab, host: str, script: str, timeout: float = 60) -> str:
    """Run ``script`` as root on a lab host; its stdout (asserting success)."""
    proc = lab.ssh(host, ["sudo", "sh", "-c", script], timeout=timeout)
    assert proc.returncode == 0, (host, script, proc.stdout, proc.stderr)
    return proc.stdout.decode() if isinstance(proc.stdout, bytes) else proc.stdout


REFERENCE_APP = Path(__file__).resolve().parents[2] / "examples" / "smpy-app"
_COPY_IGNORE = ("node_modules", ".venv", "__pycache__", "dist", ".pytest_cache")


def app_variant(directory: Path, edits: dict[str, list[tuple[str, str]]] | None = None,
                files: dict[str, str] | None = None, message: str = "variant") -> Path:
    """A copy of the reference app as its own git repository, changed and committed.

    ``edits`` maps a path to (old, new) replacements, each of which must match
    exactly once; ``files`` adds or replaces whole files.
    """
    import shutil

    if not (directory / ".git").is_dir():
        shutil.copytree(REFERENCE_APP, directory, ignore=shutil.ignore_patterns(*_COPY_IGNORE))
        git(directory, "init", "-q", "-b", "main")
    for relative, replacements in (edits or {}).items():
        path = directory / relative
        text = path.read_text()
        for old, new in replacements:
            assert text.count(old) == 1, f"{relative}: {old!r} found {text.count(old)} times"
            text = text.replace(old, new)
        path.write_text(text)
    for relative, text in (files or {}).items():
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        (directory / relative).write_text(text)
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "--allow-empty", "-m", message)
    return directory


def git(directory: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.name=smship tests", "-c", "user.email=tests@smship.invalid",
                           *args], cwd=directory, capture_output=True, text=True, check=True)
    return proc.stdout


class CommandLineWatch:
    """Every process's command line (/proc/*/cmdline) on the hosts and here, sampled while smship runs (bounded)."""

    SCRIPT = 'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f" 2>/dev/null; echo; done'

    def __init__(self, lab, max_samples: int = 300, max_seconds: float = 600):
        self.lab, self.max_samples, self.max_seconds = lab, max_samples, max_seconds
        self.samples: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=(h,), daemon=True) for h in (*APP_HOSTS, None)]

    def _sample(self, host: str | None) -> str:
        if host is None:
            lines = []
            for path in glob.glob("/proc/[0-9]*/cmdline"):
                try:
                    lines.append(Path(path).read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    continue
            return "\n".join(lines)
        proc = self.lab.ssh(host, ["sh", "-c", self.SCRIPT], timeout=30)
        return proc.stdout.decode(errors="replace") if isinstance(proc.stdout, bytes) else proc.stdout

    def _watch(self, host: str | None) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(self.max_samples):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            self.samples.append(self._sample(host))
            self._stop.wait(0.05)

    def __enter__(self) -> "CommandLineWatch":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def shown(self, secrets) -> list[str]:
        """Names of the secrets (a dict, or (name, value) pairs) whose value or fingerprint some sample shows."""
        from smship.remote.agent import key_fingerprint

        assert len(self.samples) > len(self._threads), "the watch took no samples"
        found = []
        for name, value in (secrets.items() if isinstance(secrets, dict) else secrets):
            marks = [value, key_fingerprint(name, value)]
            if any(mark in sample for mark in marks for sample in self.samples):
                found.append(name)
        return found


class SteadyClient:
    """Bounded steady load on one URL from a thread: every request's outcome, for zero-downtime checks.

    At most ``max_requests`` requests, ``interval`` seconds apart, for at most
    ``max_seconds``; only lab addresses are ever given to it.
    """

    def __init__(self, address: str, path: str = "/version", host: str = "refapp.lab.test",
                 interval: float = 0.02, max_requests: int = 20000, max_seconds: float = 600,
                 post: dict | None = None):
        import threading

        self.url = f"https://{address}{path}"
        self.post = post  # a JSON body: POST it (a request no proxy may send twice on its own)
        self.host, self.interval = host, interval
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self.ok = 0
        self.failures: list[str] = []
        self.latencies: list[float] = []
        self.releases: set[str] = set()
        self.served: list[str] = []        # each answered request's release, in order
        self.samples: list[tuple[float, float, bool]] = []  # (sent at, wall clock; seconds; answered 200)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import time

        import httpx

        deadline = time.monotonic() + self.max_seconds
        # verify=False: the lab's certificate is self-signed; TLS itself is tested elsewhere.
        with httpx.Client(verify=False, timeout=65, headers={"Host": self.host}) as client:
            for _ in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                began, sent_at, ok = time.monotonic(), time.time(), False
                try:
                    response = client.post(self.url, json=self.post) if self.post else client.get(self.url)
                    if response.status_code == 200:
                        self.ok, ok = self.ok + 1, True
                        release = (response.json().get("release", "?") if "json" in
                                   response.headers.get("content-type", "") else "?")
                        self.releases.add(release)
                        self.served.append(release)
                    else:
                        self.failures.append(f"HTTP {response.status_code}: {response.text[:120]}")
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                self.latencies.append(time.monotonic() - began)
                self.samples.append((sent_at, self.latencies[-1], ok))
                self._stop.wait(self.interval)

    def __enter__(self) -> "SteadyClient":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def summary(self) -> str:
        return f"{self.url}: {self.ok} ok, {len(self.failures)} failed {self.failures[:5]}"


# -- The deployed reference app (lab1 = [db, lb, beat], lab2 and lab3 = [web, worker]) --------------

WEB = ("lab2", "lab3")
APP_HOSTS = ("lab1", "lab2", "lab3")
APP_ROOT = "/srv/refapp"


def live_release(lab, host: str) -> str:
    return remote(lab, host, f"basename \"$(readlink {APP_ROOT}/current)\"").strip()


# The web slot that serves (nginx's link names its socket), as a shell word for remote commands.
WEB_UNIT = 'refapp-web@"$(basename "$(readlink /var/www/refapp/web/uvicorn.sock)" .sock)".service'


def wait_state(lab, host: str, unit: str, state: str, seconds: float = 60) -> None:
    """Until ``systemctl is-active unit`` says ``state`` on ``host`` (bounded)."""
    deadline = time.monotonic() + seconds
    while (now := remote(lab, host, f"systemctl is-active {unit} || true").strip()) != state:
        assert time.monotonic() < deadline, f"{unit} on {host} is {now}, not {state}, after {seconds}s"
        time.sleep(0.5)


WORKER_UNIT = "refapp-worker@$(readlink /srv/refapp/worker/live | sed 's/.*slot-//').service"


def worker_unit(lab, host: str) -> str:
    """The serving worker slot's service on ``host`` (refapp-worker@a.service or @b)."""
    return remote(lab, host, f"echo {WORKER_UNIT}").strip()


def web_unit(lab, host: str) -> str:
    """The serving web slot's service on ``host`` (refapp-web@a.service or @b)."""
    return remote(lab, host, f"echo {WEB_UNIT}").strip()


def main_pids(lab, host: str) -> dict[str, str]:
    """The main PID of each app unit: a slot switch changes the web or worker unit's name and PID."""
    units = [web_unit(lab, host), worker_unit(lab, host)] if host in WEB else ["refapp-beat.service"]
    return {u: remote(lab, host, f"systemctl show -p MainPID --value {u}").strip() for u in units}


def web_pid(lab, host: str) -> str:
    """The main PID of ``host``'s serving web slot: unchanged = its web tier was not restarted."""
    return main_pids(lab, host)[web_unit(lab, host)]


def background_release(lab, host: str) -> str:
    """The release ``host``'s worker and beat run from (their own link)."""
    return remote(lab, host, f"basename \"$(readlink {APP_ROOT}/background)\"").strip()


def fleet_state(lab, hosts=APP_HOSTS) -> dict[str, tuple[str, dict[str, str]]]:
    """Each host's live release and the main PIDs of its units: equal before and after = nothing restarted."""
    return {h: (live_release(lab, h), main_pids(lab, h)) for h in hosts}


def served_release(lab, host: str) -> str:
    answer = remote(lab, host, "curl -sk -H 'Host: refapp.lab.test' https://127.0.0.1/version")
    return json.loads(answer)["release"]


def psql(lab, sql: str) -> str:
    return remote(lab, "lab1", f"runuser -u postgres -- psql -tAc \"{sql}\" refapp").strip()


class Variants:
    """Releases of the reference app, each a commit in one scratch repository."""

    def __init__(self, lab, root: Path):
        self.lab, self.root = lab, root
        self.repo = root / "app"
        self.count = 0

    def inventory(self, edits=None, files=None, message="next") -> Path:
        if not (self.repo / ".git").is_dir():
            app_variant(self.repo, message="the reference app")  # what undo() comes back to
        self.count += 1
        app_variant(self.repo, edits, files, message=f"{message} {self.count}")

        def point_at_repo(data: dict) -> None:
            data["app"]["source"] = str(self.repo)
            lab_env(data)["health"] = {"timeout": 45}

        return write_inventory(self.lab, self.root / f"project-{self.count}", point_at_repo)

    def undo(self) -> None:
        """Drop the last commit's change (a bad release must not stay in later ones)."""
        git(self.repo, "revert", "--no-edit", "HEAD")


def steady_clients(lab, stack) -> list[SteadyClient]:
    """Through the load balancer (lab1) and straight at lab2's own nginx, a GET and a POST client each."""
    return [stack.enter_context(SteadyClient(lab.address("lab1"))),
            stack.enter_context(SteadyClient(lab.address("lab2"))),
            stack.enter_context(SteadyClient(lab.address("lab1"), path="/session", interval=0.05,
                                             post={"name": "steady"})),
            stack.enter_context(SteadyClient(lab.address("lab2"), path="/session", interval=0.05,
                                             post={"name": "steady"}))]


DRAIN_FLAG = "/var/www/refapp/draining"


def drained(lab, host: str) -> bool:
    return remote(lab, host, f"test -e {DRAIN_FLAG} && echo yes || echo no").strip() == "yes"


def nginx_workers(lab, host: str) -> str:
    """The PIDs of nginx's worker processes: a reload replaces them all."""
    return " ".join(sorted(remote(lab, host, "pgrep -f '^nginx: worker process'").split()))


def assert_no_failed_request(clients: list[SteadyClient]) -> None:
    for client in clients:
        assert client.total >= 50, client.summary()
        assert client.failures == [], client.summary()


def start_smship(*argv: str, inventory: Path, new_session: bool = False) -> subprocess.Popen:
    """smship in the background, its progress readable line by line (``new_session``: its own
    process group, so a test can send it a terminal's Ctrl-C with :func:`interrupt`)."""
    return subprocess.Popen([sys.executable, "-m", "smship", *argv, "-i", str(inventory)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=new_session,
                            env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
                            preexec_fn=_terminal_signals if new_session else None)


def finish_smship(proc: subprocess.Popen, timeout: float = 600) -> SmshipRun:
    """What :func:`start_smship`'s smship printed once it ended. One still running after ``timeout`` is
    asked where its threads are (SIGUSR1, see smship.cli), then killed, so its lock is a dead process's
    that the next command removes; the failure shows those stacks."""
    import signal
    import time

    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"smship {' '.join(proc.args[3:])} had not ended after {timeout:g}s; "
                             f"its threads then:\n{err[-12000:]}") from None
    return SmshipRun(proc.args[3:], proc.returncode, out, err)


def _terminal_signals() -> None:
    """Ctrl-C's default action in the child, as an operator's shell gives it: a test session
    started in the background by a script inherits SIGINT ignored (POSIX shells do that to
    background jobs), and smship would never see the test's Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(proc: subprocess.Popen) -> None:
    """Ctrl-C as a terminal sends it: SIGINT to the whole process group (rsync and ssh children too)."""
    import signal
    os.killpg(proc.pid, signal.SIGINT)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 300) -> list[str]:
    """Read proc's stderr until a line containing ``needle``; the lines read."""
    import time

    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if needle in line:
            return seen
    raise AssertionError(f"never saw {needle!r}; got:\n{''.join(seen)}")


# -- Faults the lab itself does not model -------------------------------------------------------------

@contextmanager
def ssh_refused(lab, host: str) -> Iterator[None]:
    """New SSH connections from this machine to ``host`` are refused (TCP reset), as with sshd down.

    Connections already open stay up, as they do when sshd stops.  A table
    of our own in this machine's nftables, removed on the way out.
    """
    table = f"smship_drill_{os.getpid()}"
    rules = (f"table inet {table} {{\n chain out {{\n  type filter hook output priority 0;\n"
             f"  ip daddr {lab.address(host)} tcp dport 22 ct state new reject with tcp reset\n }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=True)


RELEASE_VOLUME = """\
set -eu
releases={root}/releases
staging=/run/smship-drill-releases
if mountpoint -q "$releases"; then exit 0; fi
mkdir -p "$staging"
mount -t tmpfs -o size=$(( $(du -sm "$releases" | cut -f1) + {headroom_mb} ))m smship-drill "$staging"
chown --reference="$releases" "$staging" && chmod --reference="$releases" "$staging"
cp -a "$releases"/. "$staging"/
mount --bind "$staging" "$releases"
"""


def give_releases_a_volume(lab, host: str, headroom_mb: int = 300) -> None:
    """Put ``releases/`` of ``host`` on a small volume of its own (a tmpfs holding a copy of it).

    The lab's hosts live on the machine's memory; filling their root would
    fill that.  A bounded volume can be filled safely, as a full /srv would be.
    """
    remote(lab, host, RELEASE_VOLUME.format(root=APP_ROOT, headroom_mb=headroom_mb), timeout=120)


def fill_releases_volume(lab, host: str) -> None:
    """Leave (almost) no free byte on ``host``'s releases volume."""
    remote(lab, host, f"avail=$(df --output=avail -B1 {APP_ROOT}/releases | tail -n1); "
                      f"fallocate -l $((avail - 4096)) {APP_ROOT}/releases/.drill-fill")


def empty_releases_volume(lab, host: str) -> None:
    remote(lab, host, f"rm -f {APP_ROOT}/releases/.drill-fill")


# -- an app's inventory as `smship init` writes it, filled in for a lab fleet

INIT_ENV = "prod"  # the environment init writes


def checkout_app(directory: Path, source: Path) -> Path:
    """The app as a git repository of its own (smship builds commits)."""
    shutil.copytree(source, directory, ignore=shutil.ignore_patterns(
        "node_modules", "dist", ".venv", "__pycache__", ".pytest_cache", "package-lock.json"))
    git(directory, "init", "-q", "-b", "main")
    git(directory, "add", "-A")
    git(directory, "commit", "-q", "-m", "the app")
    return directory


def init_inventory(app: Path, output: Path) -> str:
    """What ``smship init --app APP`` writes (its text)."""
    proc = subprocess.run([sys.executable, "-m", "smship", "init", "--app", str(app), "--output", str(output)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return output.read_text()


def fill_in(text: str, lab_inventory: Path, secrets_file: Path, domain: str, roles: dict[str, list[str]]) -> str:
    """Replace init's <FILL IN> parts with the fleet's facts; nothing else is touched."""
    data = yaml.safe_load(text)
    fleet_env = next(iter(yaml.safe_load(lab_inventory.read_text())["environments"].values()))
    addresses = {host["name"]: host["address"] for host in fleet_env["hosts"]}
    env = data["environments"][INIT_ENV]
    env["domain"] = domain
    env["ssh"] = fleet_env["ssh"]
    env["tls"] = {"source": "self-signed"}
    env["lab"] = True          # self-signed certificates are for labs only
    env["secrets"]["path"] = str(secrets_file)
    env["hosts"] = [{"name": name, "address": addresses[name], "roles": host_roles}
                    for name, host_roles in roles.items()]
    return yaml.safe_dump(data, sort_keys=False)


def write_secrets(path: Path, lab_secrets: Path, names: list[str]) -> None:
    """The secrets file init asked for: the app's names, new values; smship's db names from the lab."""
    import secrets

    from smship.secrets import read_file_backend

    lab_values = read_file_backend(lab_secrets)
    lines = [f"{name}={lab_values.get(name) or secrets.token_urlsafe(48)}" for name in names]
    path.write_text("".join(line + "\n" for line in lines))
    path.chmod(0o600)
