"""The Lab: a set of throwaway Debian hosts on a private bridge of this machine.

    lab = Lab()                    # directory, bridge, subnet from env or defaults
    lab.up(hosts=3, image="fat")   # build or reuse the image (Debian 13 by default), boot, wait for ssh
    lab.add("bookworm")            # one more host, of another Debian release
    lab.ssh("lab1", ["systemctl", "is-system-running"])
    lab.kill("lab2"); lab.start("lab2")
    lab.down()                     # leaves nothing behind

Everything the lab changes on the machine is recorded in a state file first, so a
later ``up`` or ``down`` can clean up after a crash.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from smship.lab import files, host, image, inotify, network
from smship.lab.host import HostSpec
from smship.lab.system import LabError, require_platform, run
from smship.settings import SettingsError, load_settings

STATE_VERSION = 1
CGROUP_ROOT = "smship-lab"

Reporter = Callable[[str | None, str], None]


def _silent(_host: str | None, _message: str) -> None:
    pass


@dataclass
class HostStatus:
    name: str
    address: str
    roles: list[str]
    running: bool
    partitioned: bool
    ssh: bool


@dataclass
class UpResult:
    hosts: list[tuple[str, str]]
    image: str
    image_built: bool
    image_seconds: float
    seconds: float
    distros: tuple[str, ...] = ()      # each host's Debian suite, in order


def host_distros(distro: str | Sequence[str], count: int) -> list[str]:
    """Each host's suite: one for all, or a comma list naming one per host."""
    names = [d.strip() for d in distro.split(",")] if isinstance(distro, str) else list(distro)
    for name in names:
        image.check_distro(name)
    if len(names) == 1:
        return names * count
    if len(names) != count:
        raise LabError(f"--distro names {len(names)} distributions for {count} host(s): "
                       "give one for all hosts or one per host")
    return names


class Lab:
    """One lab, identified by its directory; see the module docstring."""

    def __init__(self, directory: str | os.PathLike | None = None, *,
                 bridge: str | None = None, subnet: str | None = None,
                 reporter: Reporter | None = None) -> None:
        try:
            settings = load_settings()
        except SettingsError as exc:
            raise LabError(str(exc)) from None
        self.settings = settings
        self.dir = Path(directory or settings.lab_dir).absolute()
        state = self._read_state()
        # A running lab keeps the network it was created with.
        bridge = bridge or (state or {}).get("bridge") or settings.lab_bridge
        subnet = subnet or (state or {}).get("subnet") or settings.lab_subnet
        self.net = network.NetworkPlan.make(bridge, subnet)
        self.report: Reporter = reporter or _silent

    # ------------------------------------------------------------ paths

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def inventory(self) -> Path:
        return self.dir / "inventory.yml"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def identity(self) -> Path:
        return self.dir / files.KEY_NAME

    @property
    def secrets(self) -> Path:
        return self.dir / "secrets.env"

    @property
    def run_dir(self) -> Path:
        """tmpfs holding the unpacked image and every host's overlay."""
        return self.dir / "run"

    @property
    def cgroup_base(self) -> str:
        return f"{CGROUP_ROOT}/{self.net.bridge}"

    # ------------------------------------------------------------ state

    def _read_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise LabError(f"lab state file {self.state_file} is damaged ({exc}); "
                           "remove it and run `smship lab down`") from exc

    def _write_state(self, state: dict) -> None:
        files.write_text(self.state_file, json.dumps(state, indent=2) + "\n", mode=0o600)

    def state(self) -> dict | None:
        return self._read_state()

    def specs(self) -> list[HostSpec]:
        state = self._read_state() or {}
        return [HostSpec(**h) for h in state.get("hosts", [])]

    def spec(self, name: str) -> HostSpec:
        for spec in self.specs():
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self.specs()) or "none: the lab is down"
        raise LabError(f"no lab host named {name!r} (hosts: {known})")

    @property
    def hosts(self) -> list[tuple[str, str]]:
        """(name, address) of every host, in order."""
        return [(s.name, s.address) for s in self.specs()]

    def is_up(self) -> bool:
        return self.state_file.is_file()

    @contextmanager
    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    # ------------------------------------------------------------ up

    def up(self, hosts: int = 3, image_name: str = "base", app: str | os.PathLike | None = None,
           wait: float = 90, distro: str | Sequence[str] = image.DEFAULT_DISTRO) -> UpResult:
        """Create and boot ``hosts`` hosts, write the lab files, wait until ssh answers."""
        require_platform()
        if hosts < 1 or hosts > 200:
            raise LabError("--hosts must be between 1 and 200")
        started = time.monotonic()
        suites = host_distros(distro, hosts)
        recipes = {suite: image.machine_recipe(image_name, suite) for suite in dict.fromkeys(suites)}
        names = files.host_names(hosts)
        addresses = [str(self.net.address(i)) for i in range(1, hosts + 1)]
        with self._locked():
            leftovers = self.residue()
            if leftovers or self.is_up():
                self.report(None, "cleaning up a previous lab: " + (", ".join(leftovers)
                                                                  or "state file"))
                self._teardown()
            images = {suite: self._image(recipe) for suite, recipe in recipes.items()}
            try:
                self._create(image_name, images, list(zip(names, addresses, suites)), app)
            except BaseException:
                self.report(None, "lab up failed; removing what it created")
                self._teardown()
                raise
        self.wait_ssh(names, timeout=wait)
        seconds = time.monotonic() - started
        self.report(None, f"{hosts} host(s) up in {seconds:.1f} s; inventory: {self.inventory}")
        return UpResult(list(zip(names, addresses)), image_name, any(i.built for i in images.values()),
                        sum(i.seconds for i in images.values()), seconds, tuple(suites))

    def _image(self, recipe: image.Recipe) -> image.ImageResult:
        img = image.ensure_image(recipe, log=lambda m: self.report(None, m))
        self.report(None, (f"image {recipe.name} ({recipe.suite}) built in {img.seconds:.0f} s" if img.built
                           else f"image {recipe.name} ({recipe.suite}) cached ({img.tarball.name})"))
        return img

    def _lower(self, image_name: str, suite: str, tarball: Path) -> Path:
        """The unpacked image of ``suite`` on the lab's tmpfs, unpacked once per lab."""
        lower = self.run_dir / "images" / f"{image_name}-{suite}"
        if not lower.is_dir():
            t0 = time.monotonic()
            image.unpack(tarball, lower)
            self.report(None, f"image {image_name} ({suite}) unpacked in {time.monotonic() - t0:.1f} s")
        return lower

    def _create(self, image_name: str, images: dict[str, image.ImageResult],
                hosts: list[tuple[str, str, str]], app) -> None:
        state = {"version": STATE_VERSION, "dir": str(self.dir), "bridge": self.net.bridge,
                 "subnet": str(self.net.subnet), "nft_table": self.net.nft_table,
                 "ip_forward_before": None, "cgroup_base": self.cgroup_base,
                 "image": {"name": image_name,
                           "tarballs": {suite: str(i.tarball) for suite, i in images.items()}},
                 "run_dir": str(self.run_dir), "hosts": []}
        self._write_state(state)          # recorded before anything is changed
        state.update(network.up(self.net))
        self._write_state(state)
        self.report(None, f"bridge {self.net.bridge} {self.net.gateway}/"
                          f"{self.net.subnet.prefixlen}, NAT table {self.net.nft_table}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "tmpfs", "-o", "mode=0755", "smship-lab", str(self.run_dir)])
        files.ensure_keypair(self.dir)
        files.ensure_secrets(self.dir)
        keys = self._create_hosts(state, image_name, images, hosts)
        files.write_text(self.known_hosts, files.render_known_hosts(keys))
        self._write_files(app, [(name, address) for name, address, _ in hosts])

    def _create_hosts(self, state: dict, image_name: str, images: dict[str, image.ImageResult],
                      hosts: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """Create and boot ``hosts`` (name, address, suite); their (name, address, host key)."""
        client_key = files.ensure_keypair(self.dir)
        all_hosts = {s["name"]: s["address"] for s in state["hosts"]}
        all_hosts.update({name: address for name, address, _ in hosts})
        keys = []
        specs = []
        for name, address, suite in hosts:
            lower = self._lower(image_name, suite, images[suite].tarball)
            hdir = self.run_dir / "hosts" / name
            spec = HostSpec(name=name, address=address, prefixlen=self.net.subnet.prefixlen,
                            gateway=str(self.net.gateway), bridge=self.net.bridge,
                            lower=str(lower), upper=str(hdir / "upper"),
                            work=str(hdir / "work"), root=str(hdir / "root"),
                            run_dir=str(hdir), log=str(self.dir / "logs" / f"{name}.log"),
                            cgroup_name=f"{self.cgroup_base}/{name}",
                            machine=host.machine_name(name, self.net.bridge))
            specs.append(spec)
            state["hosts"].append(spec.to_dict())
            self._write_state(state)
            Path(spec.log).parent.mkdir(parents=True, exist_ok=True)
            Path(spec.log).write_text("")
            keys.append((name, address, host.create(spec, client_key, all_hosts)))
            self.report(name, f"created at {address} (Debian {suite})")
        state["inotify_before"] = inotify.claim(self.net.bridge, len(state["hosts"]))
        self._write_state(state)
        for spec in specs:
            pid = host.boot(spec)
            self.report(spec.name, f"booting (nspawn pid {pid})")
        return keys

    def add(self, distro: str = image.DEFAULT_DISTRO, wait: float = 90) -> tuple[str, str]:
        """One more host, of Debian ``distro``, on the running lab: (name, address).

        The lab's inventory is left as it is (its topology is the lab's own);
        ssh_config and known_hosts gain the host, so an inventory of one's own
        can use it beside the others. ``remove`` takes it away again.
        """
        require_platform()
        with self._locked():
            state = self._read_state()
            if not state:
                raise LabError(f"the lab in {self.dir} is down; run `smship lab up` first")
            taken = {s["name"] for s in state["hosts"]}
            index = next(i for i in range(1, 201) if f"lab{i}" not in taken)
            name, address = f"lab{index}", str(self.net.address(index))
            recipe = image.machine_recipe(state["image"]["name"], image.check_distro(distro))
            images = {distro: self._image(recipe)}
            keys = self._create_hosts(state, recipe.name, images, [(name, address, distro)])
            with open(self.known_hosts, "a") as known:
                known.write(files.render_known_hosts(keys))
            hosts = [(s["name"], s["address"]) for s in state["hosts"]]
            files.write_text(self.ssh_config, files.render_ssh_config(self.dir, hosts))
        self.wait_ssh([name], timeout=wait)
        return name, address

    def remove(self, name: str) -> None:
        """Power off and delete one host ``add`` created (its overlay, link and cgroup)."""
        require_platform(tools=False)
        with self._locked():
            state = self._read_state() or {}
            spec = self.spec(name)
            if host.is_running(spec):
                host.stop(spec, timeout=20)
            host.kill_cgroup(spec.cgroup_name)
            host.remove_veth(spec)
            host.unmount_tree(Path(spec.run_dir))
            if Path(spec.run_dir).is_dir():
                _remove_tree(Path(spec.run_dir))
            host.remove_cgroups(spec.cgroup_name)
            state["hosts"] = [h for h in state["hosts"] if h["name"] != name]
            self._write_state(state)
            hosts = [(h["name"], h["address"]) for h in state["hosts"]]
            files.write_text(self.ssh_config, files.render_ssh_config(self.dir, hosts))
        self.report(name, "removed")

    def _write_files(self, app, hosts: list[tuple[str, str]]) -> None:
        source = Path(app) if app else Path.cwd()
        files.write_text(self.ssh_config, files.render_ssh_config(self.dir, hosts))
        files.write_text(self.inventory, files.render_inventory(self.dir, source, hosts))

    # ------------------------------------------------------------ down

    def down(self) -> list[str]:
        """Remove every host, the bridge, the NAT table; restore ip_forward and the inotify limits. Nothing else."""
        require_platform(tools=False)
        with self._locked():
            return self._teardown()

    def _teardown(self) -> list[str]:
        state = self._read_state() or {}
        removed: list[str] = []
        specs = [HostSpec(**h) for h in state.get("hosts", [])]
        running = [s for s in specs if host.is_running(s)]
        for spec in running:                     # clean poweroff, all at once
            pid = host.nspawn_pid(spec)
            if pid:
                try:
                    os.kill(pid, 15)
                except ProcessLookupError:
                    pass
        for spec in running:
            if not host.wait_stopped(spec, 20):
                host.kill(spec)
            self.report(spec.name, "powered off")
            removed.append(f"host {spec.name}")
        host.kill_cgroup(self.cgroup_base)       # anything left (after a crash)
        for spec in specs:
            host.remove_veth(spec)
        host.unmount_tree(self.run_dir)
        if host.mounts_under(self.run_dir):
            raise LabError(f"cannot unmount {self.run_dir}; see `findmnt -R {self.run_dir}`")
        if self.run_dir.is_dir():
            _remove_tree(self.run_dir)
        host.remove_cgroups(self.cgroup_base)
        for hierarchy in host.CGROUP_HIERARCHIES:   # shared parent, if no other lab uses it
            try:
                (host.CGROUP_FS / hierarchy / CGROUP_ROOT).rmdir()
            except OSError:
                pass
        removed += network.down(state.get("bridge", self.net.bridge),
                                state.get("nft_table", self.net.nft_table),
                                state.get("ip_forward_before"))
        restored = inotify.release(state.get("bridge", self.net.bridge), fallback=state.get("inotify_before"))
        if restored:
            removed.append("inotify limits restored to " + ", ".join(f"{k}={v}" for k, v in restored.items()))
        self.state_file.unlink(missing_ok=True)
        for item in removed:
            if not item.startswith("host "):
                self.report(None, item)
        return removed

    def residue(self) -> list[str]:
        """What of this lab exists on the machine (empty when fully down)."""
        found = []
        pids = host.cgroup_pids(self.cgroup_base)
        if pids:
            found.append(f"{len(pids)} process(es) in cgroup {self.cgroup_base}")
        procs = nspawn_processes(self.run_dir)
        if procs:
            found.append(f"systemd-nspawn process(es) {procs}")
        mounts = host.mounts_under(self.run_dir)
        if mounts:
            found.append(f"{len(mounts)} mount(s) under {self.run_dir}")
        for spec in self.specs():
            if network.link_exists(spec.veth):
                found.append(f"link {spec.veth}")
        if network.link_exists(self.net.bridge):
            found.append(f"bridge {self.net.bridge}")
        if network.nft_table_exists(self.net.nft_table):
            found.append(f"nftables table {self.net.nft_table}")
        for hierarchy in host.CGROUP_HIERARCHIES:
            if (host.CGROUP_FS / hierarchy / self.cgroup_base).exists():
                found.append(f"cgroup {hierarchy}/{self.cgroup_base}")
        return found

    # ------------------------------------------------------------ status

    def status(self) -> list[HostStatus]:
        specs = self.specs()
        roles = files.topology(len(specs)) if specs else []

        def one(item: tuple[HostSpec, list[str]]) -> HostStatus:
            spec, host_roles = item
            running = host.is_running(spec)
            parted = running and host.is_partitioned(spec)
            ok = running and not parted and self.ssh(spec.name, ["true"], timeout=10,
                                                     connect_timeout=3).returncode == 0
            return HostStatus(spec.name, spec.address, host_roles, running, parted, ok)

        with ThreadPoolExecutor(max_workers=max(1, min(16, len(specs)))) as pool:
            return list(pool.map(one, zip(specs, roles)))

    def cpu_seconds(self) -> float | None:
        """CPU time every host of the lab has used so far, all together (None: not counted here).
        Hosts share this machine's cores, so a benchmark reads how much of them its command took."""
        counts = [host.cpu_seconds(spec.cgroup_name) for spec in self.specs()]
        return None if not counts or None in counts else sum(counts)

    # ------------------------------------------------------------ ssh

    def ssh_argv(self, name: str, argv: Sequence[str] | object, connect_timeout: int = 5,
                 extra: Iterable[str] = ()) -> list[str]:
        """System ssh command line running ``argv`` on host ``name`` (no local shell).

        ``argv`` is a list of words or an :class:`smship.command.Command`; it is quoted
        once for the remote shell.
        """
        words = list(getattr(argv, "argv", argv))
        if getattr(argv, "sudo", False):
            user = getattr(argv, "user", None)
            words = ["sudo", "-n"] + (["-u", user] if user else []) + ["--"] + words
        return ["ssh", "-F", str(self.ssh_config), "-o", f"ConnectTimeout={connect_timeout}",
                *extra, name, "--", shlex.join(words)]

    def ssh(self, name: str, argv: Sequence[str] | object, *, timeout: float = 60,
            connect_timeout: int = 5, input: bytes | None = None,
            extra: Iterable[str] = ()) -> subprocess.CompletedProcess:
        """Run a command on a host with the system ssh client and the lab's ssh_config."""
        cmd = self.ssh_argv(name, argv, connect_timeout, extra)
        stdin_data = input if input is not None else getattr(argv, "stdin", None)
        try:
            return subprocess.run(cmd, input=stdin_data, capture_output=True, timeout=timeout,
                                  stdin=None if stdin_data is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(cmd, 255, exc.stdout or b"",
                                               (exc.stderr or b"") + b"\nsmship: timed out")

    def wait_ssh(self, names: Sequence[str] | str | None = None, timeout: float = 60) -> float:
        """Wait until ssh logs in on every named host (all by default). Returns seconds."""
        if isinstance(names, str):
            names = [names]
        specs = [self.spec(n) for n in names] if names else self.specs()
        started = time.monotonic()
        deadline = started + timeout
        pending = {s.name: s for s in specs}
        while pending:
            for name, spec in list(pending.items()):
                if not host.is_running(spec):
                    raise LabError(f"host {name} is not running: {host.exit_report(spec)}")
                if host.ssh_port_open(spec.address, 0.3) and self.ssh(
                        name, ["true"], timeout=10, connect_timeout=2).returncode == 0:
                    del pending[name]
                    self.report(name, f"ssh answers ({time.monotonic() - started:.1f} s)")
            if pending and time.monotonic() > deadline:
                detail = "; ".join(f"{n}: see {s.log}" for n, s in pending.items())
                raise LabError(f"ssh did not answer within {timeout:.0f} s on {detail}")
            if pending:
                time.sleep(0.2)
        return time.monotonic() - started

    # ------------------------------------------------------------ faults

    def stop(self, name: str, timeout: float = 30) -> None:
        """Clean poweroff."""
        require_platform(tools=False)
        host.stop(self.spec(name), timeout=timeout)
        self.report(name, "powered off")

    def start(self, name: str, wait: float = 60) -> None:
        """Boot a stopped host (same disk, same keys) and wait for ssh."""
        require_platform(tools=False)
        spec = self.spec(name)
        if host.is_running(spec):
            self.report(name, "already running")
        else:
            pid = host.boot(spec)
            self.report(name, f"booting (nspawn pid {pid})")
        if wait:
            self.wait_ssh([name], timeout=wait)

    def kill(self, name: str) -> None:
        """Power loss: the host dies at once, without shutting anything down."""
        require_platform(tools=False)
        spec = self.spec(name)
        if not host.is_running(spec):
            raise LabError(f"host {name} is not running")
        host.kill(spec)
        self.report(name, "power cut")

    def partition(self, name: str) -> None:
        """Cut the host's network link (it keeps running)."""
        require_platform(tools=False)
        host.partition(self.spec(name))
        self.report(name, "network cut")

    def heal(self, name: str) -> None:
        """Restore a partitioned host's network link."""
        require_platform(tools=False)
        host.heal(self.spec(name))
        self.report(name, "network restored")


def nspawn_processes(run_dir: Path) -> list[int]:
    """PIDs of systemd-nspawn processes booting a root below ``run_dir``."""
    marker = f"--directory={run_dir}/".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"systemd-nspawn") and any(
                a.startswith(marker) for a in cmd):
            found.append(int(entry))
    return found


def _remove_tree(path: Path) -> None:
    """Delete a directory tree without crossing into any mount still below it."""
    dev = path.stat().st_dev
    for dirpath, dirnames, filenames in os.walk(path, topdown=False):
        for f in filenames:
            try:
                os.unlink(os.path.join(dirpath, f))
            except FileNotFoundError:
                pass
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                os.unlink(full)
            elif os.lstat(full).st_dev == dev:
                os.rmdir(full)
    os.rmdir(path)
