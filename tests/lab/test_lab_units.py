"""Pure pieces of the lab: no root, no hosts, no network."""

from __future__ import annotations

import dataclasses
from pathlib import Path
import shlex

import pytest
import yaml

from smship.command import cmd
from smship.lab import files, host, image, network, system, tasks
from smship.lab.lab import Lab
from smship.inventory import load
from smship.lab.system import LabError

HOSTS3 = [("lab1", "192.168.250.11"), ("lab2", "192.168.250.12"), ("lab3", "192.168.250.13")]


# ---------------------------------------------------------------- topology

def test_topology_one_host_does_everything():
    assert files.topology(1) == [["web", "worker", "beat", "db"]]


def test_topology_two_hosts():
    assert files.topology(2) == [["db", "worker", "beat"], ["web"]]


@pytest.mark.parametrize("count", [3, 4, 7])
def test_topology_many_hosts(count):
    roles = files.topology(count)
    assert len(roles) == count
    assert roles[0] == ["db", "lb", "beat"]
    assert all(r == ["web", "worker"] for r in roles[1:])
    # Exactly one db and one beat, like production.
    flat = [r for rs in roles for r in rs]
    assert flat.count("db") == 1 and flat.count("beat") == 1


def test_topology_rejects_zero():
    with pytest.raises(LabError):
        files.topology(0)


# ---------------------------------------------------------------- files

def test_inventory_is_a_complete_lab_environment(tmp_path):
    labdir = tmp_path / "lab"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "pyproject.toml").write_text('[project]\nname = "Shop_API.2"\n')
    text = files.render_inventory(labdir, tmp_path / "app", HOSTS3)
    data = yaml.safe_load(text)
    # Named as smship init names it: from the project's name.
    assert data["app"] == {"name": "shop-api-2", "source": str((tmp_path / "app").resolve()),
                           "python": "/usr/bin/python3"}
    env = data["environments"]["lab"]
    assert env["domain"] == "shop-api-2.lab.test"
    assert env["ssh"] == {"user": "deploy", "known_hosts": str(labdir / "known_hosts"),
                          "config": str(labdir / "ssh_config"),
                          "identity": str(labdir / "id_ed25519"),
                          "accept_unknown_hosts": False}
    assert env["tls"] == {"source": "self-signed"}
    # Self-signed certificates are allowed only where the environment says it is a lab.
    assert env["lab"] is True
    (tmp_path / "inventory.yml").write_text(text)
    assert load(tmp_path / "inventory.yml").environment("lab").tls.source == "self-signed"
    assert env["secrets"] == {"backend": "file", "path": str(labdir / "secrets.env")}
    assert env["env"] == {"SM_ENVIRONMENT": "production", "SM_LOG_FORMAT": "json",
                          "SM_DB_POOL_SIZE": "2", "SM_DB_MAX_OVERFLOW": "3"}
    assert env["web"] == {"workers": 2, "batch_size": 1}
    assert env["hosts"] == [
        {"name": "lab1", "address": "192.168.250.11", "roles": ["db", "lb", "beat"]},
        {"name": "lab2", "address": "192.168.250.12", "roles": ["web", "worker"]},
        {"name": "lab3", "address": "192.168.250.13", "roles": ["web", "worker"]},
    ]


def test_ssh_config_is_strict_and_per_host(tmp_path):
    text = files.render_ssh_config(tmp_path, HOSTS3)
    blocks = text.split("\nHost ")[1:]
    assert len(blocks) == 3
    for (name, address), block in zip(HOSTS3, blocks):
        lines = [line.strip() for line in block.splitlines()]
        assert lines[0] == f"{name} {address}"
        assert f"HostName {address}" in lines
        assert "User deploy" in lines
        assert "StrictHostKeyChecking yes" in lines
        assert f'UserKnownHostsFile "{tmp_path / "known_hosts"}"' in lines
        assert f'IdentityFile "{tmp_path / "id_ed25519"}"' in lines
        assert "GlobalKnownHostsFile /dev/null" in lines
    assert "accept-new" not in text and "StrictHostKeyChecking no" not in text


def test_ssh_config_refuses_paths_it_cannot_quote():
    with pytest.raises(LabError):
        files.render_ssh_config('/tmp/we"ird', HOSTS3)


def test_known_hosts_lines():
    text = files.render_known_hosts([("lab1", "192.168.250.11", "ssh-ed25519 AAAAkey1")])
    assert text == "lab1,192.168.250.11 ssh-ed25519 AAAAkey1\n"


def test_secrets_file_is_private_and_generated_once(tmp_path):
    path = files.ensure_secrets(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    first = path.read_text()
    values = dict(line.split("=", 1) for line in first.splitlines() if "=" in line)
    assert len(values["SM_SECRET_KEY"]) >= 48 and len(values["SM_DB_PASSWORD"]) >= 24
    assert files.ensure_secrets(tmp_path).read_text() == first
    other = tmp_path / "other"
    other.mkdir()
    assert files.ensure_secrets(other).read_text() != first


def test_host_names():
    assert files.host_names(3) == ["lab1", "lab2", "lab3"]


# ---------------------------------------------------------------- image recipe

SOURCES = ("deb http://deb.debian.org/debian bookworm main",)


def test_recipe_hash_is_stable_and_follows_the_recipe():
    base = image.recipe_for("base", "bookworm", SOURCES)
    assert base.digest() == image.recipe_for("base", "bookworm", SOURCES).digest()
    assert len(base.digest()) == 16 and base.filename == f"base-bookworm-{base.digest()}.tar.zst"
    fat = image.recipe_for("fat", "bookworm", SOURCES)
    assert fat.digest() != base.digest()
    assert set(image.FAT_EXTRA_PACKAGES) <= set(fat.packages)
    changed = [
        dataclasses.replace(base, packages=base.packages + ("vim-tiny",)),
        dataclasses.replace(base, suite="trixie"),
        dataclasses.replace(base, sources=("deb http://mirror.example/debian bookworm main",)),
        dataclasses.replace(base, script=base.script + "\n# changed\n"),
    ]
    assert len({r.digest() for r in changed} | {base.digest()}) == 5
    # Package order does not matter.
    assert dataclasses.replace(base, packages=tuple(reversed(base.packages))).digest() == \
        base.digest()


def test_base_image_has_the_required_packages():
    recipe = image.recipe_for("base", "bookworm", SOURCES)
    for pkg in ("systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server",
                "python3", "python3-venv", "rsync", "sudo", "curl", "ca-certificates",
                "openssl", "iproute2", "procps", "netbase", "less"):
        assert pkg in recipe.packages


def test_unknown_image_name():
    with pytest.raises(LabError, match="base, fat"):
        image.recipe_for("huge", "bookworm", SOURCES)


def test_sources_from_one_line_and_deb822(tmp_path):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text(
        "# comment\n"
        "deb [signed-by=/usr/share/keyrings/x.gpg] http://mirror.one/debian bookworm main contrib\n"
        "deb-src http://mirror.one/debian bookworm main\n"
        "deb http://other.example/ubuntu jammy main\n")
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://disabled.example\nSuites: bookworm\nComponents: main\n"
        "Enabled: no\n")
    (etc / "sources.list.d" / "vendor.list.disabled").write_text(
        "deb http://ignored.example bookworm main\n")
    assert image.machine_sources("bookworm", etc) == (
        "deb http://mirror.one/debian bookworm main contrib",
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    )


def test_another_suite_comes_from_the_machines_own_mirror(tmp_path):
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n")
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert image.sources_for("trixie", etc, os_release) == (
        "deb http://mirror.example/debian trixie main",
        "deb http://mirror.example/debian trixie-updates main",
        "deb http://mirror.example/debian-security trixie-security main",
    )
    assert image.sources_for("bookworm", etc, os_release)[0] == "deb http://mirror.example/debian bookworm main"


def test_lab_distros():
    from smship.lab.lab import host_distros
    assert image.DEFAULT_DISTRO == "trixie"
    assert host_distros("trixie", 3) == ["trixie"] * 3
    assert host_distros("bookworm,trixie", 2) == ["bookworm", "trixie"]
    with pytest.raises(LabError, match="one for all hosts or one per host"):
        host_distros("bookworm,trixie", 3)
    with pytest.raises(LabError, match="unknown lab distribution 'jammy'"):
        host_distros("jammy", 1)
    assert image.machine_recipe.__defaults__ == ("trixie",)


def test_sources_missing_suite_is_an_error(tmp_path):
    (tmp_path / "sources.list").write_text("deb http://x.example/debian trixie main\n")
    with pytest.raises(LabError, match="no apt source for bookworm"):
        image.machine_sources("bookworm", tmp_path)


# ---------------------------------------------------------------- network plan

def test_network_plan_addresses():
    plan = network.NetworkPlan.make("smshipbr0", "192.168.250.0/24")
    assert str(plan.gateway) == "192.168.250.1"
    assert [str(plan.address(i)) for i in (1, 2, 3)] == \
        ["192.168.250.11", "192.168.250.12", "192.168.250.13"]
    assert plan.nft_table == "smship_lab_smshipbr0"
    rules = plan.nft_ruleset()
    assert "masquerade" in rules and "192.168.250.0/24" in rules and "drop" not in rules
    with pytest.raises(LabError):
        plan.address(250)


@pytest.mark.parametrize("bridge,subnet", [
    ("bad name", "192.168.250.0/24"), ("waytoolongbridge0", "192.168.250.0/24"),
    ("br0; rm", "192.168.250.0/24"), ("smshipbr0", "8.8.8.0/24"),
    ("smshipbr0", "192.168.250.1/24"), ("smshipbr0", "192.168.250.0/30"),
    ("smshipbr0", "not-a-net"),
])
def test_network_plan_rejects_bad_values(bridge, subnet):
    with pytest.raises(LabError):
        network.NetworkPlan.make(bridge, subnet)


def test_machine_names_fit_veth_names_and_differ_per_lab():
    a = host.machine_name("lab1", "smshipbr0")
    b = host.machine_name("lab1", "smshiptest0")
    assert a != b and a.startswith("lab1.")
    assert len("vb-" + host.machine_name("lab200", "x")) <= 15


# ---------------------------------------------------------------- Lab without root

def test_lab_settings_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SMSHIP_LAB_DIR", str(tmp_path / "envlab"))
    monkeypatch.setenv("SMSHIP_LAB_BRIDGE", "envbr0")
    monkeypatch.setenv("SMSHIP_LAB_SUBNET", "10.99.0.0/24")
    lab = Lab()
    assert lab.dir == tmp_path / "envlab"
    assert lab.net.bridge == "envbr0" and str(lab.net.gateway) == "10.99.0.1"
    assert lab.inventory == tmp_path / "envlab" / "inventory.yml"
    explicit = Lab(tmp_path / "x", bridge="xbr0", subnet="10.98.0.0/24")
    assert explicit.net.bridge == "xbr0"


def test_ssh_argv_quotes_once_for_the_remote_shell(tmp_path):
    lab = Lab(tmp_path)
    argv = lab.ssh_argv("lab1", ["echo", "a b", "$(boom)", "'q'"])
    assert argv[:3] == ["ssh", "-F", str(tmp_path / "ssh_config")]
    assert argv[-2:] == ["--", shlex.join(["echo", "a b", "$(boom)", "'q'"])]
    assert shlex.split(argv[-1]) == ["echo", "a b", "$(boom)", "'q'"]
    sudo = lab.ssh_argv("lab1", cmd("systemctl", "restart", "x y", sudo=True))
    assert shlex.split(sudo[-1]) == ["sudo", "-n", "--", "systemctl", "restart", "x y"]


def test_faults_on_a_lab_that_is_down_say_so(tmp_path):
    with pytest.raises(LabError, match="lab is down"):
        Lab(tmp_path).spec("lab1")


def test_platform_check_names_root(monkeypatch):
    monkeypatch.setattr(system.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        system.require_platform()


def test_platform_check_names_packages(monkeypatch):
    monkeypatch.setattr(system.os, "geteuid", lambda: 0)
    monkeypatch.setattr(system.shutil, "which",
                        lambda tool: None if tool in ("mmdebstrap", "nft") else "/bin/x")
    with pytest.raises(LabError) as err:
        system.require_platform()
    assert "mmdebstrap" in str(err.value) and "nftables" in str(err.value)
    assert "apt-get install" in str(err.value)


# ---------------------------------------------------------------- tasks

def test_tasks_collection():
    assert tasks.ns.name == "lab"
    assert set(tasks.ns.task_names) == {"up", "down", "status", "stop", "start", "kill",
                                        "partition", "heal"}
    for name in tasks.ns.task_names:
        task = tasks.ns[name]
        assert task.__doc__, name
        params = [a for a in task.get_arguments()]
        for arg in params:
            assert task.help.get(arg.name) or arg.help, (name, arg.name)
    for fault in ("stop", "start", "kill", "partition", "heal"):
        assert tasks.ns[fault].positional == ["host"]


def test_tasks_report_needing_root(monkeypatch, capsys):
    from invoke import Context
    from invoke.exceptions import Exit
    monkeypatch.setattr(system.os, "geteuid", lambda: 1000)
    with pytest.raises(Exit):
        tasks.up(Context(), hosts=1, dir="/nonexistent-smship-lab")
    assert "needs root" in capsys.readouterr().out


def test_forwarding_is_restored_only_when_the_last_lab_goes(tmp_path, monkeypatch):
    forward = tmp_path / "ip_forward"
    forward.write_text("0\n")
    monkeypatch.setattr(network, "IP_FORWARD", forward)
    bridges = set()
    monkeypatch.setattr(network, "link_exists", lambda name: name in bridges)
    ledger = tmp_path / "run" / "ip_forward"
    bridges.update({"br-a", "br-b"})
    assert network.claim_forwarding("br-a", ledger) == "0"
    assert network.claim_forwarding("br-b", ledger) is None   # already on
    assert forward.read_text().strip() == "1"
    bridges.discard("br-a")
    assert network.release_forwarding("br-a", ledger) is None  # br-b still needs it
    assert forward.read_text().strip() == "1"
    bridges.discard("br-b")
    assert network.release_forwarding("br-b", ledger) == "0"
    assert forward.read_text().strip() == "0"
    assert not ledger.exists()
    # Forwarding that was on before any lab stays on.
    forward.write_text("1\n")
    assert network.claim_forwarding("br-a", ledger) is None
    assert network.release_forwarding("br-a", ledger) is None
    assert forward.read_text().strip() == "1"


def test_inotify_limits_grow_with_every_running_labs_hosts_and_come_back_after_the_last(tmp_path, monkeypatch):
    from smship.lab import inotify
    proc = tmp_path / "inotify"
    proc.mkdir()
    (proc / "max_user_instances").write_text("128\n")
    (proc / "max_user_watches").write_text("500000\n")
    bridges = {"br-a", "br-b"}
    monkeypatch.setattr(network, "link_exists", lambda name: name in bridges)
    ledger = tmp_path / "run" / "inotify"

    # 24 hosts: the 22nd failed at 128 instances.
    assert inotify.needed({"max_user_instances": 128, "max_user_watches": 8192}, 24) == \
        {"max_user_instances": 128 + 24 * 16, "max_user_watches": 8192 + 24 * 8192}
    before = {"max_user_instances": 128, "max_user_watches": 500000}
    assert inotify.claim("br-a", 24, ledger, proc) == before
    assert inotify.read(proc) == {"max_user_instances": 512, "max_user_watches": 500000 + 24 * 8192}
    assert inotify.claim("br-b", 3, ledger, proc) == before        # both labs' hosts, on the machine's values
    assert inotify.read(proc)["max_user_instances"] == 128 + 27 * 16

    bridges.discard("br-a")
    assert inotify.release("br-a", ledger, proc) is None           # br-b still runs
    assert inotify.read(proc)["max_user_instances"] == 128 + 27 * 16
    bridges.discard("br-b")
    assert inotify.release("br-b", ledger, proc) == {"max_user_instances": 128, "max_user_watches": 500000}
    assert inotify.read(proc) == before and not ledger.exists()

    # A lab never lowers a limit someone raised further while it runs.
    bridges.add("br-a")
    inotify.claim("br-a", 3, ledger, proc)
    (proc / "max_user_instances").write_text("100000\n")
    bridges.add("br-b")
    inotify.claim("br-b", 3, ledger, proc)
    assert inotify.read(proc)["max_user_instances"] == 100000


def test_inotify_release_falls_back_to_the_labs_own_record(tmp_path, monkeypatch):
    """After a machine reboot wiped /run, ``lab down`` restores what its state file recorded."""
    from smship.lab import inotify
    proc = tmp_path / "inotify"
    proc.mkdir()
    (proc / "max_user_instances").write_text("512\n")
    (proc / "max_user_watches").write_text("700000\n")
    monkeypatch.setattr(network, "link_exists", lambda name: False)
    restored = inotify.release("br-a", tmp_path / "gone", proc,
                               fallback={"max_user_instances": 128, "max_user_watches": 700000})
    assert restored == {"max_user_instances": 128}
    assert inotify.read(proc)["max_user_instances"] == 128


def test_an_app_without_a_project_name_is_named_after_its_directory(tmp_path):
    (tmp_path / "9 Billing Service").mkdir()
    data = yaml.safe_load(files.render_inventory(tmp_path / "lab", tmp_path / "9 Billing Service", HOSTS3))
    assert data["app"]["name"] == "billing-service"
    assert data["environments"]["lab"]["domain"] == "billing-service.lab.test"


def test_the_example_app_keeps_the_name_the_lab_tests_use():
    # The lab's inventory for examples/smpy-app, and the one smship init writes for it, name it refapp.
    assert files.name_of_app(Path(__file__).resolve().parents[2] / "examples" / "smpy-app") == "refapp"
