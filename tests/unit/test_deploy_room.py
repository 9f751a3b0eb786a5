"""A host whose releases volume cannot hold the release is refused before anything is shipped."""

from __future__ import annotations

from types import SimpleNamespace

from smship.steps.ship import tree_bytes, without_room


def test_hosts_with_less_free_space_than_the_release_are_named_with_both_sizes(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_bytes(b"x" * 3000)
    (tmp_path / "RELEASE_ID").write_bytes(b"r1\n")
    (tmp_path / "link").symlink_to(tmp_path / "app" / "main.py")   # a link takes no room of its own
    release = SimpleNamespace(path=tmp_path)
    assert tree_bytes(tmp_path) == 3003
    assert without_room(release, {"web1": 10_000, "web2": 3002, "web3": 3003}) == {
        "web2": "no space for the release: 3002 bytes free, the release is 3003 bytes"}
