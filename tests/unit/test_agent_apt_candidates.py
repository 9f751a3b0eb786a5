"""The agent's apt candidates, asked of this machine's real apt: kept while the files they come from
stay as they were, asked again as soon as one changes."""

from __future__ import annotations

import os

from smship.remote import agent


def test_apt_candidates_are_kept_until_a_file_they_come_from_changes(tmp_path, monkeypatch):
    cache, lists, etc = tmp_path / "cache", tmp_path / "lists", tmp_path / "etc"
    cache.mkdir(mode=0o700)
    lists.mkdir()
    (etc / "sources.list.d").mkdir(parents=True)
    (lists / "deb.debian.org_Packages").write_text("indexes\n")
    (etc / "sources.list.d" / "debian.sources").write_text("Types: deb\n")
    status = tmp_path / "status"
    status.write_text("installed\n")
    monkeypatch.setattr(agent, "AGENT_CACHE", str(cache))
    monkeypatch.setattr(agent, "APT_STATE", (str(lists), str(status), str(etc)))
    asked = []
    real_run = agent._run

    def counting(argv, stdin=None):
        if argv[0] == "apt-cache":
            asked.append(argv[2:])
        return real_run(argv, stdin)
    monkeypatch.setattr(agent, "_run", counting)

    first = agent._apt_candidates(["dpkg", "no-such-package-here"])
    assert first["dpkg"] and first["no-such-package-here"] is None
    assert agent._apt_candidates(["dpkg", "no-such-package-here"]) == first
    assert agent._apt_candidates(["dpkg"]) == {"dpkg": first["dpkg"]}
    assert len(asked) == 1

    # A pin or a source edited in place: same directory, a new modification time.
    source = etc / "sources.list.d" / "debian.sources"
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 1_000_000))
    assert agent._apt_candidates(["dpkg"]) == {"dpkg": first["dpkg"]}
    assert len(asked) == 2
    # apt update (new indexes) and dpkg (installed packages) count too.
    (lists / "security.debian.org_Packages").write_text("more\n")
    agent._apt_candidates(["dpkg"])
    status.write_text("installed and more\n")
    agent._apt_candidates(["dpkg"])
    assert len(asked) == 4
    # A name never asked is asked of apt.
    agent._apt_candidates(["dpkg", "apt"])
    assert asked[-1] == ["dpkg", "apt"]
    assert agent._apt_candidates(["apt"])["apt"] and len(asked) == 5

    # A cache others may write is neither read nor written.
    cache.chmod(0o770)
    agent._apt_candidates(["dpkg"])
    agent._apt_candidates(["dpkg"])
    assert len(asked) == 7
