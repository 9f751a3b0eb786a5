"""What a build remembers between runs: wheelhouse file hashes, and uv's export of an unchanged lock."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from smship.release import hashmemo
from smship.release.files import hash_tree
from smship.release.hashmemo import memo_path, remembered_hashes
from smship.release.locks import find_lock, requirement_lines
from smship.release.source import RepoFiles

APP = Path(__file__).resolve().parents[2] / "examples" / "smpy-app"


def settled_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Files and a symlink under ``root`` (their change time is now: tests that remember them shrink the
    memo's settle window)."""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    os.symlink("a.whl", root / "link")
    return root


@pytest.fixture
def no_settle(monkeypatch):
    monkeypatch.setattr(hashmemo, "SETTLED_SECONDS", -60)


def test_remembered_hashes_equal_a_fresh_hashing_and_are_kept_for_the_next_call(tmp_path, no_settle):
    tree = settled_tree(tmp_path / "wheels", {"a.whl": b"a" * 5000, "sub/b.whl": b"b", "requirements.txt": b"x\n"})
    memos = tmp_path / "memos"
    assert remembered_hashes(tree, memos) == hash_tree(tree)
    kept = json.loads(memo_path(tree, memos).read_text())
    assert kept["root"] == str(tree.resolve()) and sorted(kept["files"]) == ["a.whl", "requirements.txt", "sub/b.whl"]
    # The memo answers for files it knows: a hash written into it comes back (the file is not read).
    kept["files"]["a.whl"][4] = "f" * 64
    memo_path(tree, memos).write_text(json.dumps(kept))
    assert remembered_hashes(tree, memos)[0]["a.whl"] == "f" * 64


def test_a_file_rewritten_in_place_with_its_old_time_put_back_is_hashed_again(tmp_path, no_settle):
    tree = settled_tree(tmp_path / "wheels", {"a.whl": b"old!"})
    memos = tmp_path / "memos"
    before = remembered_hashes(tree, memos)[0]["a.whl"]
    info = (tree / "a.whl").stat()
    (tree / "a.whl").write_bytes(b"new!")      # the same size
    os.utime(tree / "a.whl", ns=(info.st_atime_ns, info.st_mtime_ns))
    after = remembered_hashes(tree, memos)[0]["a.whl"]
    assert after != before and after == hash_tree(tree)[0]["a.whl"]


def test_a_file_changed_just_now_is_not_remembered(tmp_path):
    tree = settled_tree(tmp_path / "wheels", {"a.whl": b"fresh"})
    memos = tmp_path / "memos"
    assert remembered_hashes(tree, memos) == hash_tree(tree)
    memo = memo_path(tree, memos)
    assert not memo.exists() or "a.whl" not in json.loads(memo.read_text())["files"]


def test_the_memo_of_a_tree_that_is_gone_is_forgotten(tmp_path, no_settle):
    memos = tmp_path / "memos"
    gone = settled_tree(tmp_path / "gone", {"a.whl": b"a"})
    remembered_hashes(gone, memos)
    shutil.rmtree(gone)
    kept = settled_tree(tmp_path / "kept", {"b.whl": b"b"})
    remembered_hashes(kept, memos)
    assert sorted(memos.glob("*.json")) == [memo_path(kept, memos)]


def test_an_unchanged_uv_lock_is_exported_once_and_a_changed_one_again(tmp_path):
    repo = tmp_path / "app"
    repo.mkdir()
    for name in ("uv.lock", "pyproject.toml"):
        shutil.copy(APP / name, repo / name)
    files = RepoFiles(repo, "0" * 40, dirty=True)
    lock, memos = find_lock(files, ""), tmp_path / "exports"
    exported = requirement_lines(files, lock, tmp_path / "scratch1", memos)
    assert any(line.startswith("fastapi==") for line in exported)
    [memo] = memos.glob("*.json")
    # The second build reads the memo (a line written into it comes back), not uv.
    memo.write_text(json.dumps(json.loads(memo.read_text()) + ["marker-only-in-the-memo==1"]))
    assert requirement_lines(files, lock, tmp_path / "scratch2", memos)[-1] == "marker-only-in-the-memo==1"
    # A changed lock is another key: uv exports it.
    (repo / "uv.lock").write_text((repo / "uv.lock").read_text() + "\n")
    again = requirement_lines(files, lock, tmp_path / "scratch3", memos)
    assert again == exported and len(list(memos.glob("*.json"))) == 2
