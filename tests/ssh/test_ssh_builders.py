"""The SSH layer's pure builders, checked without any host.

Where a builder produces shell, the tests run it through a real local
``sh`` (or rsync's own -e splitting rules) rather than comparing strings
only, so a quoting mistake shows up as behaviour, not as a diff.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import paramiko
import pytest

from smship.command import cmd, in_turn, script
from smship.ssh import (ConnectError, Endpoint, Result, SSHOptions, Target,
                        parse_jump, parse_rsync_stats,
                        remote_line, resolve, rsync_argv,
                        ssh_argv)
from smship.ssh.argv import master_argv, master_exit_argv

NASTY = ["x; rm -rf /", "$(id)", "`id`", "a b", "it's", "-n", "*", "\\", ""]


def local_sh(line: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", line], capture_output=True,
                          timeout=30)


def options(**overrides) -> SSHOptions:
    base = dict(known_hosts=Path("/k/known_hosts"), ssh_config=None,
                connect_timeout=7)
    base.update(overrides)
    return SSHOptions(**base)


# -- quoting and sudo --------------------------------------------------------


@pytest.mark.parametrize("value", NASTY)
def test_inventory_value_stays_one_literal_argument(value, tmp_path):
    line = remote_line(cmd("printf", "[%s]\\n", value))
    result = local_sh(f"cd {shlex.quote(str(tmp_path))} && {line}")
    assert result.stdout.decode() == f"[{value}]\n"
    assert list(tmp_path.iterdir()) == []  # nothing was executed or globbed


def test_plain_command_has_no_sudo():
    assert remote_line(cmd("systemctl", "restart", "app")) == \
        "systemctl restart app"


def test_sudo_wrapper_is_non_interactive_and_ends_options():
    line = remote_line(cmd("systemctl", "restart", "x; reboot", sudo=True))
    assert line == "sudo -n -H -- systemctl restart 'x; reboot'"


def test_sudo_as_user_quotes_the_user():
    assert remote_line(cmd("psql", "-c", "select 1", user="postgres")) == \
        "sudo -n -u postgres -H -- psql -c 'select 1'"
    argv = shlex.split(remote_line(cmd("id", user="x; id", sudo=True)))
    assert argv == ["sudo", "-n", "-u", "x; id", "-H", "--", "id"]


def test_sudo_wrapper_keeps_a_leading_dash_argument_out_of_sudo_options():
    argv = shlex.split(remote_line(cmd("-rf", sudo=True)))
    assert argv.index("--") < argv.index("-rf")


def test_a_root_login_runs_root_s_commands_as_they_are_and_another_user_s_through_runuser():
    assert remote_line(cmd("systemctl", "restart", "x; reboot", sudo=True), "root") == \
        "systemctl restart 'x; reboot'"
    assert shlex.split(remote_line(cmd("-rf", sudo=True, user="x; id"), "root")) == \
        ["runuser", "-u", "x; id", "--", "-rf"]
    assert remote_line(cmd("id", user="root"), "root") == "id"
    assert remote_line(cmd("id", sudo=True), "deploy") == "sudo -n -H -- id"     # only root is spared sudo


def test_commands_in_turn_run_whole_in_one_shell_and_stop_at_the_first_failure(tmp_path):
    marker = tmp_path / "it ran; really"
    early = script('[ -n "$1" ] && exit 0; exit 3', args=("x; touch /nonexistent/y",), sudo=True)
    touch = cmd("touch", str(marker), sudo=True)
    both = in_turn(early, touch, description="early, then touch")
    assert both.sudo and both.argv[:2] == ("sh", "-c") and both.description == "early, then touch"
    assert local_sh(remote_line(both, "root")).returncode == 0 and marker.exists()   # an exit 0 ends only its own
    marker.unlink()
    failing = in_turn(script("exit 4", sudo=True), touch, description="fail, then touch")
    assert local_sh(remote_line(failing, "root")).returncode == 4 and not marker.exists()
    with pytest.raises(ValueError):
        in_turn(touch, cmd("id", user="postgres"), description="two users")
    with pytest.raises(ValueError):
        in_turn(cmd("cat", sudo=True, stdin=b"secret"), touch, description="stdin")


# -- jump specs and ssh config ------------------------------------------------


def test_parse_jump_forms():
    assert parse_jump("bastion") == [(None, "bastion", None)]
    assert parse_jump("ops@bastion:2222") == [("ops", "bastion", 2222)]
    assert parse_jump("a, b@c:23") == [(None, "a", None), ("b", "c", 23)]
    assert parse_jump("[::1]:2200") == [(None, "::1", 2200)]
    with pytest.raises(ValueError):
        parse_jump("a,,b")


def test_resolve_fills_defaults_from_ssh_config(tmp_path):
    config = paramiko.SSHConfig.from_text(f"""
Host app-*
    HostName 10.9.8.7
    User deploy
    Port 2200
    IdentityFile {tmp_path}/id_deploy
    ProxyJump ops@bastion:2222
Host bastion
    HostName 10.0.0.1
""")
    endpoint = resolve(Target("web1", "app-1"), options(), config)
    assert endpoint.host == "10.9.8.7" and endpoint.port == 2200
    assert endpoint.user == "deploy"
    assert endpoint.identity == tmp_path / "id_deploy"
    assert endpoint.jumps == (Endpoint("10.0.0.1", 2222, "ops",
                                       tmp_path / "id_deploy"),)


def test_resolve_explicit_target_values_win(tmp_path):
    config = paramiko.SSHConfig.from_text(
        "Host app\n  HostName 10.9.8.7\n  User deploy\n  Port 2200\n")
    endpoint = resolve(Target("web1", "app", 2022, user="root",
                              identity=Path("/k/id")), options(), config)
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.identity) \
        == ("10.9.8.7", 2022, "root", Path("/k/id"))
    assert endpoint.jumps == ()


def test_resolve_without_config_uses_the_target_as_is():
    endpoint = resolve(Target("web1", "10.0.0.5", user="deploy",
                              jump="10.0.0.1"), options())
    assert endpoint == Endpoint("10.0.0.5", 22, "deploy", None,
                                (Endpoint("10.0.0.1", 22, "deploy"),))


# -- ssh and rsync argv ---------------------------------------------------------


def value_of(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == option]


def test_ssh_argv_carries_every_option():
    endpoint = Endpoint("10.0.0.5", 2200, "deploy", Path("/k/id ed"))
    argv = ssh_argv(endpoint, options())
    assert argv[0] == "ssh"
    assert value_of(argv, "-p") == ["2200"]
    assert value_of(argv, "-l") == ["deploy"]
    assert value_of(argv, "-i") == ["/k/id ed"]
    assert value_of(argv, "-F") == ["none"]
    assert set(value_of(argv, "-o")) >= {
        "BatchMode=yes", "StrictHostKeyChecking=yes",
        "UserKnownHostsFile=/k/known_hosts", "ConnectTimeout=7"}


def test_ssh_argv_accept_new_and_config_file():
    argv = ssh_argv(Endpoint("h", 22, "u"),
                    options(accept_unknown_hosts=True,
                            ssh_config=Path("/k/config")))
    assert "StrictHostKeyChecking=accept-new" in value_of(argv, "-o")
    assert value_of(argv, "-F") == ["/k/config"]


def test_jump_becomes_a_proxy_command_with_the_same_options():
    jump = Endpoint("10.0.0.1", 2222, "ops", Path("/k/100%key"))
    argv = ssh_argv(Endpoint("10.0.0.5", 22, "deploy", jumps=(jump,)),
                    options())
    [proxy] = [o for o in value_of(argv, "-o")
               if o.startswith("ProxyCommand=")]
    words = shlex.split(proxy.removeprefix("ProxyCommand="))
    assert words[0] == "ssh" and words[-3:] == ["-W", "[%h]:%p", "10.0.0.1"]
    assert value_of(words, "-p") == ["2222"]
    assert value_of(words, "-i") == ["/k/100%%key"]  # ssh turns %% into %
    assert "UserKnownHostsFile=/k/known_hosts" in value_of(words, "-o")
    assert "StrictHostKeyChecking=yes" in value_of(words, "-o")
    assert "-J" not in argv


def test_two_jumps_nest_and_escape_once_per_level():
    first = Endpoint("j1", 22, "u")
    second = Endpoint("j2", 22, "u")
    argv = ssh_argv(Endpoint("t", 22, "u", jumps=(first, second)), options())
    [proxy] = [o for o in value_of(argv, "-o") if o.startswith("Proxy")]
    outer = shlex.split(proxy.removeprefix("ProxyCommand="))
    assert outer[-1] == "j2"
    [inner] = [o for o in value_of(outer, "-o") if o.startswith("Proxy")]
    # The outer ssh turns %%h into %h for the j2 ssh, which then expands it.
    assert "[%%h]:%%p" in inner and inner.rstrip().endswith("j1")


def rsync_split(command: str) -> list[str]:
    """rsync's own -e splitting: spaces separate, quotes group, '' is '."""
    args, current, quote, started = [], [], "", False
    i = 0
    while i < len(command):
        char = command[i]
        if quote:
            if char == quote:
                if command[i + 1:i + 2] == quote:
                    current.append(char)
                    i += 2
                    continue
                quote = ""
            else:
                current.append(char)
        elif char in "'\"":
            quote, started = char, True
        elif char == " ":
            if current or started:
                args.append("".join(current))
            current, started = [], False
        else:
            current.append(char)
            started = True
        i += 1
    if current or started:
        args.append("".join(current))
    return args


def test_rsync_argv_shape():
    endpoint = Endpoint("10.0.0.5", 2200, "deploy", Path("/k/id"),
                        jumps=(Endpoint("b", 22, "ops"),))
    argv = rsync_argv(endpoint, options(), "/src/app", "/srv/app/rel 2/",
                      link_dest="/srv/app/rel1", excludes=("*.pyc", ".git"),
                      sudo=True, checksum=True)
    assert argv[0] == "rsync"
    assert {"--stats", "--delete", "--checksum", "--secluded-args",
            "--rsync-path=sudo -n rsync", "--link-dest=/srv/app/rel1",
            "--exclude=*.pyc", "--exclude=.git"} <= set(argv)
    assert argv[-2:] == ["/src/app/", "deploy@10.0.0.5:/srv/app/rel 2/"]
    [rsh] = value_of(argv, "-e")
    assert rsync_split(rsh) == ssh_argv(endpoint, options())


def test_rsync_s_ssh_shares_the_master_at_the_control_path_or_connects_on_its_own():
    endpoint = Endpoint("10.0.0.5", 2200, "deploy", Path("/k/id"))
    argv = rsync_argv(endpoint, options(), "/src/app", "/srv/app/rel2", control_path="/tmp/s 1/100%/0")
    [rsh] = value_of(argv, "-e")
    words = rsync_split(rsh)
    # Never a master of its own (ControlMaster=no): without one listening there, ssh logs in itself.
    assert value_of(words, "-o")[-2:] == ["ControlMaster=no", "ControlPath=/tmp/s 1/100%%/0"]
    assert words == ssh_argv(endpoint, options(), "/tmp/s 1/100%/0")
    assert "ControlPath" not in " ".join(ssh_argv(endpoint, options()))


def test_the_master_logs_in_then_waits_in_the_background_for_sessions_and_ends_when_asked():
    jump = Endpoint("b", 22, "ops")
    endpoint = Endpoint("10.0.0.5", 2200, "deploy", Path("/k/id"), jumps=(jump,))
    argv = master_argv(endpoint, options(), "/tmp/d/0", 60)
    assert argv[:len(ssh_argv(endpoint, options()))] == ssh_argv(endpoint, options())
    assert {"-f", "-N"} <= set(argv) and argv[-1] == "10.0.0.5"
    assert {"ControlMaster=yes", "ControlPath=/tmp/d/0", "ControlPersist=60",
            "ServerAliveInterval=10"} <= set(value_of(argv, "-o"))
    assert any(o.startswith("ProxyCommand=") for o in value_of(argv, "-o"))
    closing = master_exit_argv(endpoint, "/tmp/d/0")
    assert value_of(closing, "-O") == ["exit"] and value_of(closing, "-F") == ["none"]
    assert "ControlPath=/tmp/d/0" in value_of(closing, "-o") and closing[-1] == "10.0.0.5"


def test_rsync_as_root_needs_no_sudo_for_the_remote_rsync():
    argv = rsync_argv(Endpoint("10.0.0.5", 22, "root"), options(), "/src/app", "/srv/app/rel2", sudo=True)
    assert not any(a.startswith("--rsync-path") for a in argv)
    assert argv[-1] == "root@10.0.0.5:/srv/app/rel2/"


def test_rsync_argv_defaults_and_guards():
    argv = rsync_argv(Endpoint("h", 22, "u"), options(), "/src/", "/dst",
                      delete=False)
    assert "--delete" not in argv and "--checksum" not in argv
    assert not any(a.startswith("--rsync-path") for a in argv)
    with pytest.raises(ValueError):
        rsync_argv(Endpoint("h", 22, "u"), options(), "/s", "/d",
                   link_dest="rel1")


def test_parse_rsync_stats():
    output = """
Number of files: 4 (reg: 3, dir: 1)
Number of regular files transferred: 2
Total file size: 1,234,567 bytes
Total bytes sent: 1,234,890
Total bytes received: 95
"""
    assert parse_rsync_stats(output) == {
        "bytes_sent": 1234890, "bytes_received": 95, "files_transferred": 2}
    assert parse_rsync_stats("") == {
        "bytes_sent": 0, "bytes_received": 0, "files_transferred": 0}


# -- results and errors ---------------------------------------------------------


def test_result_ok_and_summary_lines():
    good = Result("web1", "true", 0, duration=0.5)
    bad = Result("web1", "false", 3, stderr="boom\nlast words\n")
    down = Result("web1", "true", -1, error="web1 (10.0.0.5:22): refused")
    assert good.ok and not bad.ok and not down.ok
    assert bad.summary() == "web1: false: exit 3: last words"
    assert down.summary() == "web1 (10.0.0.5:22): refused"
    for result in (good, bad, down):
        assert "\n" not in result.summary()


def test_connect_error_is_one_line_with_name_address_and_cause():
    error = ConnectError("web1", Endpoint("10.0.0.5", 22, "deploy"),
                         "connection refused")
    assert str(error) == "web1 (10.0.0.5:22): connection refused"
    v6 = ConnectError("db", Endpoint("::1", 2200, "u"), "timed out")
    assert str(v6) == "db ([::1]:2200): timed out"


def test_options_defaults_point_at_the_users_files(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert SSHOptions().known_hosts == tmp_path / ".ssh/known_hosts"
    assert SSHOptions().ssh_config is None  # no ~/.ssh/config yet
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh/config").write_text("")
    assert SSHOptions().ssh_config == tmp_path / ".ssh/config"
    assert not SSHOptions().accept_unknown_hosts
    with pytest.raises(ValueError):
        SSHOptions(parallel=0)


def test_only_the_ssh_package_imports_fabric_or_paramiko():
    root = Path(__file__).resolve().parents[2] / "smship"
    offenders = []
    for path in root.rglob("*.py"):
        if path.parent == root / "ssh":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            words = line.strip().split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1 and \
                    words[1].split(".")[0] in ("fabric", "paramiko"):
                offenders.append(f"{path.relative_to(root)}: {line.strip()}")
    assert offenders == []
    assert os.path.exists(root / "ssh" / "fleet.py")


def test_an_rsync_failure_names_what_went_wrong_not_the_generic_code():
    from smship.ssh import RsyncResult
    from smship.ssh.rsync import _rsync_error

    stderr = ('rsync: [receiver] write failed on "/srv/app/releases/r2/blob": No space left on device (28)\n'
              "rsync error: error in file IO (code 11) at receiver.c(380) [receiver=3.2.7]\n")
    result = RsyncResult("web1", "rsync /r2 -> /srv/app/releases/r2", 11, stderr=stderr)
    message = _rsync_error("web1", Endpoint("10.0.0.1", 22, "deploy"), result)
    assert message.startswith("web1: rsync /r2 -> /srv/app/releases/r2: rsync exit 11: ")
    assert message.endswith("No space left on device (28)")


def test_a_ctrl_c_while_the_work_is_handed_out_comes_once_every_host_s_work_began(monkeypatch, ctrl_c_raises):
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from smship.ssh import Fleet

    fleet = Fleet([Target(name, "127.0.0.1") for name in ("web1", "web2", "web3")], SSHOptions())
    began, handed = [], ThreadPoolExecutor.submit

    def submit(pool, fn, *args):
        if not began and pool._thread_name_prefix.startswith("smship-ssh"):
            # Ctrl-C as the first thread starts: unheld, it would leave the rest never begun, or one
            # thread the pool does not know of (so does not wait for) still working.
            os.kill(os.getpid(), signal.SIGINT)
        return handed(pool, fn, *args)

    def work(target):
        began.append(target.name)
        time.sleep(0.2)
        return target.name

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
    with pytest.raises(KeyboardInterrupt):
        fleet.map(work)
    # Every host's work began, and the map returned only once each was done.
    assert sorted(began) == ["web1", "web2", "web3"]
    assert not any(t.name.startswith("smship-ssh") for t in threading.enumerate())
