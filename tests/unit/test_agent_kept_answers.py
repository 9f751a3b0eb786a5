"""What the agent keeps of the programs it asks (apt's candidates, dpkg's installed packages, sshd's ports,
nginx's version): kept while the files they come from stay as they were, asked again as soon as one
changes."""

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


def _counting_runs(monkeypatch, program):
    asked = []
    real_run = agent._run

    def counting(argv, stdin=None):
        if os.path.basename(argv[0]) == program:
            asked.append(argv)
        return real_run(argv, stdin)
    monkeypatch.setattr(agent, "_run", counting)
    return asked


def _private_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setattr(agent, "AGENT_CACHE", str(cache))


def test_installed_packages_are_kept_until_dpkgs_database_changes(tmp_path, monkeypatch):
    _private_cache(tmp_path, monkeypatch)
    status = tmp_path / "status"
    status.write_text("installed\n")
    monkeypatch.setattr(agent, "DPKG_STATE", (str(status), str(tmp_path / "updates")))
    asked = _counting_runs(monkeypatch, "dpkg-query")
    # This machine's real dpkg: it has dpkg, and knows nothing of the other.
    first = agent._installed_packages(["dpkg", "no-such-package-here"])
    assert first == {"dpkg": True, "no-such-package-here": False}
    assert agent._installed_packages(["dpkg"]) == {"dpkg": True} and len(asked) == 1
    (tmp_path / "updates").mkdir()
    (tmp_path / "updates" / "0001").write_text("a change dpkg has not merged yet\n")
    agent._installed_packages(["dpkg"])
    assert len(asked) == 2


def _fake_program(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


def test_sshds_ports_are_kept_until_sshd_or_its_configuration_changes(tmp_path, monkeypatch):
    _private_cache(tmp_path, monkeypatch)
    sshd, config = tmp_path / "sbin" / "sshd", tmp_path / "ssh"
    _fake_program(sshd, f"cat {config}/sshd_config {config}/sshd_config.d/*.conf 2>/dev/null | sed -n 's/^Port /port /p'\n")
    (config / "sshd_config.d").mkdir(parents=True)
    (config / "sshd_config").write_text(f"Port 22\nInclude {config}/sshd_config.d/*.conf\n")
    monkeypatch.setattr(agent, "SSHD", str(sshd))
    monkeypatch.setattr(agent, "SSHD_CONFIG", str(config))
    asked = _counting_runs(monkeypatch, "sshd")
    assert agent._sshd_ports() == [22] and agent._sshd_ports() == [22] and len(asked) == 1
    # A drop-in that moves sshd is read at once: the firewall must not shut it out.
    (config / "sshd_config.d" / "port.conf").write_text("Port 2200\n")
    assert agent._sshd_ports() == [22, 2200] and len(asked) == 2
    # A configuration that includes a file outside /etc/ssh is asked every time.
    (config / "sshd_config").write_text("Port 22\nInclude /srv/elsewhere/sshd.conf\n")
    agent._sshd_ports()
    agent._sshd_ports()
    assert len(asked) == 4
    # A failing sshd's answer is not kept.
    (config / "sshd_config").write_text("Port 22\n")
    _fake_program(sshd, "exit 255\n")
    assert agent._sshd_ports() == [] and agent._sshd_ports() == [] and len(asked) == 6


def test_nginxs_version_is_kept_until_its_program_changes(tmp_path, monkeypatch):
    _private_cache(tmp_path, monkeypatch)
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(agent, "NGINX", str(bin_dir / "nginx"))
    asked = _counting_runs(monkeypatch, "nginx")
    assert agent._nginx_installed() is None
    _fake_program(bin_dir / "nginx", "echo 'nginx version: nginx/1.26.3' >&2\n")
    assert agent._nginx_installed() == "1.26.3" and agent._nginx_installed() == "1.26.3"
    assert len(asked) == 2
    # An upgrade renames a new program into place.
    new = tmp_path / "new-nginx"
    _fake_program(new, "echo 'nginx version: nginx/1.28.0' >&2\n")
    new.replace(bin_dir / "nginx")
    assert agent._nginx_installed() == "1.28.0" and len(asked) == 3
