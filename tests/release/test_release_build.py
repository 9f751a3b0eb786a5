"""build_release on a throwaway repo: no network (no npm packages, wheels from a local dir)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from releasekit import APP, git, make_demo_repo, make_wheel
from smship.errors import SmshipError
from smship.release import build_release
from smship.release.wheelhouse import BOOKWORM, TRIXIE, UV_VERSION, installer_wheel
from smship.release.files import sha256_file

NOW = datetime(2026, 11, 25, 9, 30, 0, tzinfo=timezone.utc)


def build(repo, cache, tmp_path, name="out", **kwargs):
    return build_release(repo.app, work_dir=tmp_path / name, cache_dir=cache, **kwargs)


def npm_runs(log: Path) -> list[str]:
    return log.read_text().split()


def test_release_tree_manifest_and_id(demo, cache, tmp_path, fixture_log):
    messages: list[str] = []
    release = build(demo, cache, tmp_path, progress=messages.append, now=NOW)
    sha = git(demo.root, "rev-parse", "HEAD")

    assert release.id == f"20261125T093000Z-{sha[:7]}"
    assert release.path == tmp_path / "out" / release.id
    assert (release.path / "RELEASE_ID").read_text() == release.id + "\n"
    m = release.manifest
    assert json.loads((release.path / "release.json").read_text()) == m
    assert (m["id"], m["git_sha"], m["ref"], m["dirty"]) == (release.id, sha, "HEAD", False)
    assert m["built_at"] == "2026-11-25T09:30:00+00:00"
    assert re.fullmatch(r".+@.+", m["built_by"])
    assert m["python"] == "3.13" and m["smship_version"]   # the default target: Debian 13
    assert m["alembic_heads"] == ["bbb2"] and release.alembic_heads == ("bbb2",)

    # Only the app's subtree, plus the built front end; no node_modules, no manifest hashing itself.
    on_disk = sorted(p.relative_to(release.path).as_posix() for p in release.path.rglob("*")
                     if p.is_file() and p.name != "release.json")
    assert sorted(m["files"]) == on_disk
    assert "OTHER.md" not in on_disk and not any("node_modules" in p for p in on_disk)
    assert {"main.py", "RELEASE_ID", "static/robots.txt", "static/dist/.vite/manifest.json",
            "static/dist/assets/main.js", "host/migrations/versions/bbb2_second.py"} <= set(on_disk)
    for rel, digest in m["files"].items():
        assert hashlib.sha256((release.path / rel).read_bytes()).hexdigest() == digest

    # The wheelhouse: a separate directory, named by deps_id = sha256(requirements.txt)[:16].
    requirements = release.wheels_path / "requirements.txt"
    assert release.wheels_path == tmp_path / "out" / "wheels" / release.deps_id
    assert release.deps_id == m["deps_id"] == hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    uv_wheel = f"uv-{UV_VERSION}-py3-none-manylinux_2_17_x86_64.whl"     # even with no dependencies: the installer
    assert m["wheels"] == {"requirements.txt": sha256_file(requirements),
                           uv_wheel: sha256_file(release.wheels_path / uv_wheel)}
    assert npm_runs(fixture_log) == ["install", "build"]
    assert not any(msg.startswith("warning:") for msg in messages)


def test_commit_build_ignores_the_working_tree_and_warns(demo, cache, tmp_path, fixture_log):
    demo.write("main.py", "changed = True\n")
    demo.write("extra.py", "untracked = True\n")
    messages: list[str] = []
    release = build(demo, cache, tmp_path, progress=messages.append)
    assert "changed" not in (release.path / "main.py").read_text()
    assert not (release.path / "extra.py").exists()
    assert not release.dirty and not release.id.endswith("-dirty")
    assert any("uncommitted changes" in w for w in release.warnings)
    assert any(msg.startswith("warning: uncommitted changes") for msg in messages)


def test_dirty_build_takes_tracked_and_untracked_but_not_ignored(demo, cache, tmp_path, fixture_log):
    demo.write("main.py", "changed = True\n")
    demo.write("extra.py", "untracked = True\n")
    demo.write("debug.log", "ignored\n")
    (demo.app / "host" / "migrations" / "env.py").unlink()       # deleted but still tracked
    release = build(demo, cache, tmp_path, dirty=True, now=NOW)
    sha = git(demo.root, "rev-parse", "HEAD")
    assert release.id == f"20261125T093000Z-{sha[:7]}-dirty"
    assert release.manifest["dirty"] is True and release.manifest["git_sha"] == sha
    assert (release.path / "main.py").read_text() == "changed = True\n"
    assert (release.path / "extra.py").exists()
    assert not (release.path / "debug.log").exists()
    assert not (release.path / "host" / "migrations" / "env.py").exists()


def test_building_an_older_ref(demo, cache, tmp_path, fixture_log):
    first = git(demo.root, "rev-parse", "HEAD")
    demo.write("host/migrations/versions/ccc3_third.py", 'revision = "ccc3"\ndown_revision = "bbb2"\n')
    demo.commit("third migration")
    old = build(demo, cache, tmp_path, name="old", ref=first)
    new = build(demo, cache, tmp_path, name="new")
    assert old.manifest["git_sha"] == first and old.manifest["ref"] == first
    assert old.alembic_heads == ("bbb2",) and new.alembic_heads == ("ccc3",)
    assert not (old.path / "host/migrations/versions/ccc3_third.py").exists()
    with pytest.raises(SmshipError, match="does not name a commit"):
        build(demo, cache, tmp_path, name="bad", ref="no-such-branch")


def test_second_build_reuses_front_end_and_wheelhouse(demo, cache, tmp_path, fixture_log, commands):
    first = build(demo, cache, tmp_path, name="one")
    assert npm_runs(fixture_log) == ["install", "build"]
    ran_first = [c for c in commands if c[0] == "npm" or "pip" in c]

    commands.clear()
    second = build(demo, cache, tmp_path, name="two")
    assert npm_runs(fixture_log) == ["install", "build"]            # neither npm ci nor the build ran
    assert not [c for c in commands if c[0] == "npm" or "pip" in c]
    assert second.manifest["files"] == first.manifest["files"] | {"RELEASE_ID": second.manifest["files"]["RELEASE_ID"]}
    assert ran_first                                                  # the spy does see real runs

    # A front end change rebuilds, but the same package-lock.json reuses node_modules.
    demo.write("client_app/src/main.js", "console.log('v2');\n")
    demo.commit("v2")
    third = build(demo, cache, tmp_path, name="three")
    assert npm_runs(fixture_log) == ["install", "build", "build"]
    assert "v2" in (third.path / "static/dist/assets/main.js").read_text()


def test_the_content_digest_names_what_hosts_run_not_when_it_was_built(demo, cache, tmp_path, fixture_log):
    first = build(demo, cache, tmp_path, name="one", now=NOW)
    again = build(demo, cache, tmp_path, name="two", now=datetime(2026, 12, 1, 8, 0, 0, tzinfo=timezone.utc))
    assert first.id != again.id and first.manifest["built_at"] != again.manifest["built_at"]
    assert first.content == again.content and re.fullmatch(r"[0-9a-f]{64}", first.content)

    dirty = build(demo, cache, tmp_path, name="dirty", dirty=True)        # the same files, built as a working tree
    assert dirty.content not in (None, first.content)
    demo.write("main.py", "changed = True\n")
    demo.commit("one changed file")
    changed = build(demo, cache, tmp_path, name="changed")
    assert changed.content != first.content
    other_python = build(demo, cache, tmp_path, name="py312", ref=first.manifest["git_sha"], target=BOOKWORM)
    assert other_python.content != first.content


def test_builds_of_one_commit_in_one_second_never_replace_each_other(demo, cache, tmp_path, fixture_log):
    first = build(demo, cache, tmp_path, now=NOW)
    shipping = sorted(p.relative_to(first.path) for p in first.path.rglob("*"))
    same = build(demo, cache, tmp_path, now=NOW)
    # The same content: the tree already published is that release.
    assert (same.id, same.path, same.content) == (first.id, first.path, first.content)
    other = build(demo, cache, tmp_path, now=NOW, target=BOOKWORM)     # the same commit for other hosts
    assert other.content != first.content and other.id != first.id
    assert other.id == f"20261125T093001Z-{first.manifest['git_sha'][:7]}"
    assert (other.path / "RELEASE_ID").read_text() == other.id + "\n"
    assert json.loads((other.path / "release.json").read_text()) == other.manifest
    assert other.manifest["files"]["RELEASE_ID"] == hashlib.sha256((other.path / "RELEASE_ID").read_bytes()).hexdigest()
    # The first release's tree was never touched while "shipping".
    assert sorted(p.relative_to(first.path) for p in first.path.rglob("*")) == shipping
    assert (first.path / "RELEASE_ID").read_text() == first.id + "\n"


def test_missing_vite_manifest_fails_clearly(demo, cache, tmp_path, fixture_log):
    demo.write("client_app/build.js", "console.log('builds nothing');\n")
    demo.commit("broken build")
    with pytest.raises(SmshipError, match=r"did not write static/dist/\.vite/manifest\.json"):
        build(demo, cache, tmp_path)
    assert not (tmp_path / "out").exists() or not [p for p in (tmp_path / "out").iterdir()
                                                    if not p.name.startswith(".")]


def test_failing_npm_build_reports_its_output(demo, cache, tmp_path, fixture_log):
    demo.write("client_app/build.js", "console.error('vite exploded'); process.exit(3);\n")
    demo.commit("failing build")
    with pytest.raises(SmshipError, match="npm run build .*failed.*vite exploded"):
        build(demo, cache, tmp_path)


def test_not_a_git_repository(tmp_path, cache):
    (tmp_path / "plain").mkdir()
    with pytest.raises(SmshipError, match="not inside a git repository"):
        build_release(tmp_path / "plain", work_dir=tmp_path / "out", cache_dir=cache)


def test_missing_uv_lock(demo, cache, tmp_path, fixture_log):
    (demo.app / "uv.lock").unlink()
    demo.commit("no lock")
    with pytest.raises(SmshipError, match=r"no lock for the Python project at apps/demo .*looked for apps/demo/uv.lock"):
        build(demo, cache, tmp_path)


def test_wheelhouse_downloads_locked_wheels_once(tmp_path, cache, fixture_log, commands, monkeypatch):
    index = tmp_path / "index"
    make_wheel(index, "tinydep", "1.0")
    make_wheel(index, "tinydep", "2.0")           # not locked: must not be picked
    monkeypatch.setenv("PIP_NO_INDEX", "1")        # pip reads its options from the environment
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    repo = make_demo_repo(tmp_path / "repo", deps={"tinydep": "1.0"})

    release = build(repo, cache, tmp_path, name="one")
    names = sorted(p.name for p in release.wheels_path.iterdir())
    uv_wheel = f"uv-{UV_VERSION}-py3-none-manylinux_2_17_x86_64.whl"      # the hosts' installer travels along
    assert names == ["requirements.txt", "tinydep-1.0-py3-none-any.whl", uv_wheel]
    requirements = (release.wheels_path / "requirements.txt").read_text()
    assert requirements.splitlines()[1:] == [f"# installer: uv=={UV_VERSION}", "tinydep==1.0"]
    assert set(release.manifest["wheels"]) == set(names)
    downloads = [c for c in commands if "download" in c]
    assert downloads and all("--only-binary=:all:" in c and "--no-deps" in c for c in downloads)
    assert ["--python-version", "3.13"] == downloads[0][downloads[0].index("--python-version"):][:2]

    commands.clear()
    again = build(repo, cache, tmp_path, name="two")
    assert again.deps_id == release.deps_id
    assert not [c for c in commands if "download" in c or "wheel" in c]


def test_the_installer_is_downloaded_once_per_cache_with_an_allow_listed_environment(tmp_path, commands, monkeypatch):
    index = tmp_path / "index"
    make_wheel(index, "uv", UV_VERSION)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("SM_SECRET_KEY", "not-for-pip")
    seen_env = []
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: seen_env.append(kw.get("env")) or real_run(*a, **kw))
    cache = tmp_path / "fresh-cache"

    wheel = installer_wheel(cache, python=sys.executable, target=TRIXIE)
    assert wheel.name == f"uv-{UV_VERSION}-py3-none-any.whl" and wheel.is_relative_to(cache / "installers")
    [download] = [c for c in commands if "download" in c]
    assert f"uv=={UV_VERSION}" in download and "--only-binary=:all:" in download
    assert seen_env[-1] is not None and "SM_SECRET_KEY" not in seen_env[-1] and seen_env[-1]["PIP_NO_INDEX"] == "1"

    commands.clear()
    assert installer_wheel(cache, python=sys.executable, target=TRIXIE) == wheel
    assert not commands


def test_local_dependency_is_refused(tmp_path, cache, fixture_log, monkeypatch):
    repo = make_demo_repo(tmp_path / "repo")
    (repo.app / "uv.lock").write_text(
        (repo.app / "uv.lock").read_text().replace('source = { virtual = "." }',
                                                    'source = { virtual = "." }\ndependencies = [{ name = "lib" }]')
        + '\n[[package]]\nname = "lib"\nversion = "0.1.0"\nsource = { editable = "../lib" }\n')
    repo.commit("local dep")
    with pytest.raises(SmshipError, match="local dependency"):
        build(repo, cache, tmp_path)


def test_app_without_client_app_builds_without_front_end(tmp_path, cache):
    repo = make_demo_repo(tmp_path / "repo")
    subprocess.run(["git", "-C", str(repo.root), "rm", "-rq", f"{APP}/client_app"], check=True)
    repo.commit("no front end")
    release = build(repo, cache, tmp_path)
    assert release.manifest["frontend"] is None
    assert not (release.path / "static/dist").exists()


def test_symlinks_are_kept_inside_and_refused_outside(demo, cache, tmp_path, fixture_log):
    import os
    from smship.release import load_release

    os.symlink("robots.txt", demo.app / "static" / "robots-link.txt")
    release = build(demo, cache, tmp_path, name="inside", dirty=True)
    assert release.manifest["symlinks"] == {"static/robots-link.txt": "robots.txt"}
    assert os.readlink(release.path / "static" / "robots-link.txt") == "robots.txt"
    load_release(release.path)

    os.symlink("../../../OTHER.md", demo.app / "escape.md")
    with pytest.raises(SmshipError, match="symlink escape.md points outside the app"):
        build(demo, cache, tmp_path, name="outside", dirty=True)
