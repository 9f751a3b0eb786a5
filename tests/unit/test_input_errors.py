"""Bad local files and settings: one line naming the file, line or variable, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from smship.errors import SmshipError
from smship.output import Reporter
from smship.release.ids import check_release_id
from smship.release.hostcmds import check_deps_id
from smship.release.source import export, secret_like_file
from smship.secrets import read_file_backend
from smship.settings import SettingsError, load_settings
from smship.ssh import Fleet, FleetResult, SSHOptions, read_known_hosts

ROOT = Path(__file__).resolve().parents[2]
# A real ed25519 public key line (any valid key will do).
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def test_known_hosts_with_cert_authority_lines_keeps_the_plain_keys(tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"@cert-authority *.example.com {HOST_KEY}\nweb1.example.com {HOST_KEY}\n"
                     f"# a comment\nodd.example.com sk-unknown-type AAAA\n")
    entries = read_known_hosts(known)
    assert [e.hostnames for e in entries] == [["web1.example.com"]]
    Fleet([], SSHOptions(known_hosts=known))  # no error per host later either


def test_known_hosts_with_a_revoked_line_is_refused_once_naming_the_line(tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"web1.example.com {HOST_KEY}\n@revoked * {HOST_KEY}\n")
    with pytest.raises(SmshipError) as caught:
        Fleet([], SSHOptions(known_hosts=known))
    assert str(caught.value) == (f"{known}:2: @revoked lines are not supported: remove the line together "
                                 "with the revoked key's own lines")


def test_a_binary_known_hosts_file_is_one_line(tmp_path):
    known = tmp_path / "known_hosts"
    known.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SmshipError, match=re.escape(f"{known}: the known_hosts file is not UTF-8 text")):
        read_known_hosts(known)


def test_a_secrets_path_that_is_a_directory_is_one_line(tmp_path):
    with pytest.raises(SmshipError) as caught:
        read_file_backend(tmp_path)
    assert str(caught.value) == (f"{tmp_path}: secrets file is not a regular file (a directory?); "
                                 "secrets.path names a file")


def test_release_and_dependency_ids_are_full_matches():
    assert check_release_id("20261125T093000Z-ab12cd3") == "20261125T093000Z-ab12cd3"
    for bad in ("20261125T093000Z-ab12cd3\n", "20261125T093000Z-ab12cd3/../x"):
        with pytest.raises(SmshipError):
            check_release_id(bad)
    with pytest.raises(SmshipError):
        check_deps_id("0123456789abcdef\n")


# ---------------------------------------------------------------- dirty builds

def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "app"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "main.py").write_text("app = None\n")
    (repo / ".gitignore").write_text("ignored.pem\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return repo


def test_a_dirty_build_refuses_untracked_secret_like_files(tmp_path):
    repo = _repo(tmp_path)
    for name in (".env", ".env.production", "deploy/server.key", "tls.pem"):
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_text("x")
    with pytest.raises(SmshipError) as caught:
        export(repo, tmp_path / "out", dirty=True)
    assert str(caught.value) == ("a dirty build would ship untracked files that look like secrets: .env, "
                                 ".env.production, deploy/server.key, tls.pem; add them to .gitignore "
                                 "(or move them out of the repository)")
    assert not (tmp_path / "out" / ".env").exists()


def test_a_dirty_build_ships_templates_and_ignores_ignored_files(tmp_path):
    repo = _repo(tmp_path)
    (repo / ".env.example").write_text("SM_X=\n")
    (repo / "ignored.pem").write_text("x")
    export(repo, tmp_path / "out", dirty=True)
    assert (tmp_path / "out" / ".env.example").is_file()
    assert not (tmp_path / "out" / "ignored.pem").exists()
    assert not secret_like_file("docs/keys.md") and secret_like_file("a/id_ed25519")


# ---------------------------------------------------------------- settings

def test_every_smship_variable_is_read_through_the_settings_object():
    readers = []
    for path in (ROOT / "smship").rglob("*.py"):
        if path.name == "settings.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(environ|getenv)\b.*SMSHIP_|SMSHIP_\w*.*\b(environ|getenv)", line):
                readers.append(f"{path.relative_to(ROOT)}:{number}")
    assert readers == []


def test_the_cache_and_lab_settings_come_from_their_variables(monkeypatch, tmp_path):
    from smship.lab.lab import Lab
    from smship.release import cache_dir

    monkeypatch.setenv("SMSHIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SMSHIP_LAB_DIR", str(tmp_path / "lab"))
    monkeypatch.setenv("SMSHIP_LAB_CACHE", str(tmp_path / "images"))
    monkeypatch.setenv("SMSHIP_LAB_DISTRO", "bookworm")
    assert cache_dir() == tmp_path / "cache"
    lab = Lab()
    assert lab.dir == tmp_path / "lab"
    assert lab.settings.lab_distro == "bookworm"
    from smship.lab.image import cache_dir as image_cache

    assert image_cache() == tmp_path / "images"


@pytest.mark.parametrize("variable, value, message", [
    ("SMSHIP_PARALLEL", "abc", "SMSHIP_PARALLEL='abc': must be a whole number from 1 to 200"),
    ("SMSHIP_OUTPUT", "xml", "SMSHIP_OUTPUT='xml': must be 'text' or 'json'"),
    ("SMSHIP_LAB_DISTRO", "sid", "SMSHIP_LAB_DISTRO='sid': must be 'trixie' or 'bookworm'"),
])
def test_a_bad_variable_breaks_the_build_cache_lookup_with_its_name(variable, value, message, monkeypatch):
    from smship.release import cache_dir

    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        cache_dir()
    assert str(caught.value) == message
    with pytest.raises(SettingsError):
        load_settings()


# ---------------------------------------------------------------- provision --check --diff -o json

class _FakeFleet:
    round_trips: dict = {}

    def __init__(self, targets):
        self.targets = targets

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, work):
        return FleetResult({t.name: work(t) for t in self.targets})


def _provision_with_a_diff(monkeypatch, output: str, show=None) -> Reporter:
    from smship.provision import provision as engine
    from smship.engine.plan import Change, Plan

    host = SimpleNamespace(name="web1", roles=["web"])
    plan = Plan(changes=[Change("file", "/etc/nginx/x.conf", "content", diff="--- a\n+++ b\n-old\n+new"),
                         Change("file", "/srv/app/shared/env", "content (secret)")])
    monkeypatch.setattr(engine, "environment", lambda d: None)
    monkeypatch.setattr(engine, "render_and_look", lambda *a: (FleetResult({"web1": object()}), None))
    monkeypatch.setattr(engine, "provision_host", lambda fleet, target, state, check, **_: engine.HostOutcome(plan, False))
    reporter = Reporter(output)
    ctx = SimpleNamespace(inventory=SimpleNamespace(path=Path("/x/smship.yml")), reporter=reporter, name="prod", secrets={},
                          env=SimpleNamespace(backup=None, logs=None, secrets=None, hosts_with=lambda role: [],
                                              db=SimpleNamespace(pooler=None)),
                          app=SimpleNamespace(settings=SimpleNamespace(backend_names=lambda: ()), interpreter="/usr/bin/python3",
                                              python=None))
    assert engine.provision(ctx, _FakeFleet([SimpleNamespace(name="web1")]), [host], check=True, diff=True, show=show)
    return reporter


def test_provision_check_diff_json_keeps_stdout_one_document_with_the_diffs(monkeypatch, capsys):
    reporter = _provision_with_a_diff(monkeypatch, "json")
    reporter.finish("provision prod")
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    (host,) = document["hosts"]
    assert host["details"]["diffs"] == ["--- a\n+++ b\n-old\n+new", "--- /srv/app/shared/env: content (secret)"]
    assert "-old\n+new\n--- /srv/app/shared/env: content (secret)\n" in captured.err


def test_provision_check_diff_text_prints_the_diffs(monkeypatch):
    shown: list[str] = []
    _provision_with_a_diff(monkeypatch, "text", shown.append)
    assert shown == ["--- a\n+++ b\n-old\n+new", "--- /srv/app/shared/env: content (secret)"]
