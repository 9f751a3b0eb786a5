"""The SSH layer against a real sshd on 127.0.0.1 (see conftest.py).

The "remote" host is this machine, so the tests can look behind the
connection: /proc shows every command line, the file system shows inodes
and modes, and the sshd log shows how many sessions were opened.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from smship.command import cmd, script
from smship.ssh import (CommandError, ConnectError, Fleet, Result,
                        SSHOptions, SudoPasswordRequired, Target,
                        until_disconnected)

pytestmark = pytest.mark.sshd

# Must match the users conftest.py creates; the sshd fixture checks it.
LOOPBACK = "127.0.0.1"
SUDO_USER = "smship-test"
PLAIN_USER = "smship-nosudo"


@pytest.fixture(autouse=True)
def _same_names_as_conftest(sshd) -> None:
    assert (sshd.address, sshd.sudo_user, sshd.plain_user) == \
        (LOOPBACK, SUDO_USER, PLAIN_USER)


def accepted_logins(server) -> int:
    return server.log.read_text(errors="replace").count("Accepted publickey")


def wait_for_logins(server, count: int) -> int:
    # sshd writes its log asynchronously to us; give it a bounded moment.
    for _ in range(40):
        seen = accepted_logins(server)
        if seen >= count:
            return seen
        time.sleep(0.05)
    return accepted_logins(server)


def one_line(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text


# -- run -------------------------------------------------------------------


def test_run_returns_output_and_exit_code(fleet, target):
    result = fleet.run(target, cmd("sh", "-c", "echo out; echo err >&2"))
    assert (result.ok, result.exit_code) == (True, 0)
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert result.host == "web1" and result.duration > 0

    failed = fleet.run("web1", cmd("sh", "-c", "echo nope >&2; exit 3"))
    assert (failed.ok, failed.exit_code, failed.error) == (False, 3, None)
    with pytest.raises(CommandError) as raised:
        fleet.run(target, cmd("sh", "-c", "echo nope >&2; exit 3"),
                  check=True)
    assert str(raised.value) == "web1: sh -c 'echo nope >&2; exit 3': " \
                                "exit 3: nope"


def test_inventory_values_reach_the_host_as_literal_text(fleet, target,
                                                         remote_dir):
    trap = remote_dir / "pwned"
    values = [f"x; touch {trap}", f"$(touch {trap})", f"`touch {trap}`"]
    result = fleet.run(target, cmd("printf", "%s\\n", *values), check=True)
    assert result.stdout.splitlines() == values
    result = fleet.run(target, cmd("id", "-un", sudo=True,
                                   user=f"root; touch {trap}"))
    assert not result.ok and not trap.exists()


def test_one_connection_is_reused_for_every_operation(sshd, options, target):
    logins = accepted_logins(sshd)
    with Fleet([target], options) as fleet:
        seen = {fleet.run(target, cmd("sh", "-c", 'echo "$SSH_CONNECTION"'),
                          check=True).stdout for _ in range(5)}
        assert fleet.round_trips == {"web1": 5}
    assert len(seen) == 1  # same client port: one TCP connection
    assert wait_for_logins(sshd, logins + 1) == logins + 1
    with Fleet([target], options) as other:
        again = other.run(target, cmd("sh", "-c", 'echo "$SSH_CONNECTION"'),
                          check=True).stdout
    assert again not in seen  # a new Fleet is a new connection


def test_timeout_ends_the_command_and_keeps_the_connection(fleet, target):
    started = time.monotonic()
    result = fleet.run(target, cmd("sleep", "10"), timeout=0.5)
    assert time.monotonic() - started < 5
    assert not result.ok and "timed out after 0.5s" in result.error
    assert fleet.run(target, cmd("true")).ok


# Kills the nearest sshd process above the command: its session's connection goes down with it.
KILL_OWN_SSHD = ('p=$$; while [ "$p" -gt 1 ]; do case "$(cat /proc/$p/comm)" in sshd*) kill -9 "$p"; break;; esac; '
                 "p=$(awk '{print $4}' /proc/$p/stat); done; sleep 5")


def test_a_connection_that_goes_down_under_a_command_is_said_and_the_next_command_opens_a_new_one(fleet, target):
    result = fleet.run(target, cmd("sh", "-c", KILL_OWN_SSHD), timeout=30)
    assert result.connection_lost and result.lost and not result.ok, result
    assert result.error.startswith("web1: ") and "connection lost" in result.error, result
    assert fleet.run(target, cmd("echo", "back"), check=True).stdout == "back\n"


def test_a_command_killed_by_a_signal_has_no_exit_status_and_the_connection_stays(fleet, target):
    # The login shell sshd started for the command dies by the signal.
    result = fleet.run(target, cmd("sh", "-c", "echo before; kill -KILL $PPID"))
    assert result.exit_code == -1 and result.lost and result.error is None
    assert result.stdout == "before\n"
    assert fleet.run(target, cmd("true")).ok


def test_a_command_that_never_reads_its_stdin_ends_as_it_exits(fleet, target):
    # Its stdin is dropped with it, not fed into a closed channel forever.
    result = fleet.run(target, cmd("sh", "-c", "exit 4", stdin=os.urandom(8 * 1024 * 1024)), timeout=60)
    assert (result.exit_code, result.error) == (4, None)


def test_output_is_decoded_whole_however_it_is_split(fleet, target):
    text = "é€𝄞" * 50000
    result = fleet.run(target, cmd("cat", stdin=text.encode()), check=True)
    assert result.stdout == text


def test_timeout_ends_a_command_that_keeps_writing(fleet, target):
    started = time.monotonic()
    # Writes without pause, and for longer than the test waits (20 s at most, should the timeout not hold);
    # a shell's echo is slow enough that what it writes in 0.5 s stays small.
    result = fleet.run(target, cmd("timeout", "20", "sh", "-c", "while :; do echo tick; done"), timeout=0.5)
    assert time.monotonic() - started < 5
    assert not result.ok and "timed out after 0.5s" in result.error and "tick" in result.stdout


def appears(path: Path, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


def test_a_begun_command_runs_before_the_rest_of_its_stdin_comes_and_ends_with_it(fleet, target, remote_dir):
    started = remote_dir / "started"
    begun = fleet.begin(target, cmd("sh", "-c", f"touch {started}; cat", stdin=b"head\n"))
    assert appears(started)
    result = begun.finish(b"tail\n", timeout=30, description="cat, begun ahead")
    assert (result.ok, result.stdout, result.command) == (True, "head\ntail\n", "cat, begun ahead")
    assert fleet.round_trips == {"web1": 1}


def test_a_cancelled_begun_command_reads_the_end_of_its_stdin(fleet, target, remote_dir):
    ended = remote_dir / "ended"
    begun = fleet.begin(target, cmd("sh", "-c", f"cat >/dev/null; touch {ended}", stdin=b"head\n"))
    begun.cancel()
    assert appears(ended)
    assert fleet.run(target, cmd("true")).ok


def test_a_command_whose_host_cannot_be_reached_fails_when_finished_without_a_second_attempt(
        sshd, options, closed_port):
    down = Target("down", LOOPBACK, closed_port, user=SUDO_USER, identity=sshd.client_key)
    with Fleet([down], options) as fleet:
        attempts = []
        connect = fleet.connection
        fleet.connection = lambda target: attempts.append(target) or connect(target)
        result = fleet.begin(down, cmd("cat", stdin=b"head\n")).finish(b"tail\n", timeout=30)
    assert (result.ok, result.error) == (False, f"down ({LOOPBACK}:{closed_port}): connection refused")
    assert len(attempts) == 1


def test_no_packet_is_sent_from_the_main_thread_where_ctrl_c_could_break_paramikos_locks(
        sshd, options, target, monkeypatch):
    import paramiko

    senders: set[threading.Thread] = set()
    for method in ("_send_message", "_send_user_message"):
        original = getattr(paramiko.Transport, method)

        def recording(self, data, _original=original):
            senders.add(threading.current_thread())
            return _original(self, data)
        monkeypatch.setattr(paramiko.Transport, method, recording)
    with Fleet([target], options) as fleet:
        assert fleet.run(target, cmd("true")).ok
        assert fleet.begin(target, cmd("cat", stdin=b"head ")).finish(b"tail", timeout=30).stdout == "head tail"
        fleet.begin(target, cmd("cat")).cancel()
        seen = set(senders)
    assert seen and threading.main_thread() not in seen


def test_ctrl_c_during_a_command_is_raised_at_once_and_the_connection_still_serves(fleet, target):
    import signal

    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        fleet.run(target, cmd("sleep", "5"))
    assert time.monotonic() - began < 3
    answer = fleet.map(lambda t: fleet.run(t, cmd("echo", "still here"), timeout=10), [target])
    assert answer.succeeded["web1"].stdout == "still here\n"
    assert fleet.run(target, cmd("echo", "and here"), timeout=10).stdout == "and here\n"


# -- sudo --------------------------------------------------------------------


def test_sudo_runs_as_root_and_as_another_user(fleet, target):
    assert fleet.run(target, cmd("id", "-un", sudo=True),
                     check=True).stdout == "root\n"
    as_nobody = fleet.run(target, cmd("sh", "-c", 'id -un; echo "$HOME"',
                                      user="nobody"), check=True)
    assert as_nobody.stdout.splitlines() == \
        ["nobody", pwd.getpwnam("nobody").pw_dir]


def test_sudo_that_needs_a_password_fails_clearly(sshd, options):
    plain = Target("app1", LOOPBACK, sshd.port, user=PLAIN_USER,
                   identity=sshd.client_key)
    with Fleet([plain], options) as fleet:
        assert fleet.run(plain, cmd("whoami"), check=True).stdout == \
            f"{PLAIN_USER}\n"
        started = time.monotonic()
        result = fleet.run(plain, cmd("true", sudo=True), timeout=20)
        assert time.monotonic() - started < 10  # never waits at a prompt
        assert not result.ok and result.exit_code == 1
        assert result.error.startswith("app1: true: sudo on this host "
                                       f"needs a password for user "
                                       f"{PLAIN_USER}")
        assert "NOPASSWD" in result.error and one_line(result.error)
        with pytest.raises(SudoPasswordRequired):
            fleet.run(plain, cmd("true", user="root"), check=True)


# -- stdin -------------------------------------------------------------------


def all_command_lines() -> list[bytes]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines.append(Path(f"/proc/{entry}/cmdline").read_bytes())
            except OSError:  # the process ended while we looked
                pass
    return lines


def test_stdin_secret_never_reaches_a_command_line(fleet, target):
    secret = "s3cret-" + secrets.token_hex(16)
    marker = "smship-marker-" + secrets.token_hex(8)
    command = script('IFS= read -r s; sleep 1.5; printf %s "$s" | wc -c',
                     args=(marker,), sudo=True,
                     stdin=(secret + "\n").encode())
    outcome: list[Result] = []
    runner = threading.Thread(
        target=lambda: outcome.append(fleet.run(target, command)))
    runner.start()
    marker_seen = False
    deadline = time.monotonic() + 10
    while runner.is_alive() and time.monotonic() < deadline:
        for line in all_command_lines():
            assert secret.encode() not in line
            marker_seen = marker_seen or marker.encode() in line
        time.sleep(0.02)
    runner.join(timeout=20)
    assert marker_seen, "the scan never saw the remote command it watched"
    [result] = outcome
    assert result.ok and result.stdout.strip() == str(len(secret))
    assert secret not in result.command and secret not in repr(result)


def test_binary_stdin_arrives_intact_and_fast(fleet, target):
    data = os.urandom(4 * 1024 * 1024)
    started = time.monotonic()
    result = fleet.run(target, cmd("sha256sum", stdin=data), check=True)
    assert result.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert time.monotonic() - started < 30


# -- rsync -------------------------------------------------------------------


def make_tree(root: Path) -> dict[str, bytes]:
    files = {"app.py": b"print('hi')\n" * 100,
             "static/style.css": b"body{}\n" * 50,
             "odd name; $(id).txt": b"odd\n",
             "cache.pyc": b"\x00compiled"}
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def test_rsync_copies_deletes_and_reports_stats(fleet, target, remote_dir,
                                                tmp_path):
    files = make_tree(tmp_path / "src")
    dest = remote_dir / "rel1"
    before = fleet.round_trips["web1"]
    result = fleet.rsync(target, tmp_path / "src", str(dest),
                         excludes=("*.pyc",))
    assert result.ok, result.summary()
    assert fleet.round_trips["web1"] == before + 1
    for name, data in files.items():
        if name.endswith(".pyc"):
            assert not (dest / name).exists()
        else:
            assert (dest / name).read_bytes() == data
    assert result.files_transferred == 3
    payload = sum(len(d) for n, d in files.items() if not n.endswith(".pyc"))
    assert result.bytes_sent >= payload and result.bytes_received > 0

    (dest / "stale.txt").write_text("left from an old release")
    again = fleet.rsync(target, tmp_path / "src", str(dest),
                        excludes=("*.pyc",), delete=False)
    assert again.ok and again.files_transferred == 0
    assert (dest / "stale.txt").exists()
    again = fleet.rsync(target, tmp_path / "src", str(dest),
                        excludes=("*.pyc",), checksum=True)
    assert again.ok and not (dest / "stale.txt").exists()


def masters_of(fleet) -> list[int]:
    """The pids of the ssh masters listening in this fleet's socket directory."""
    directory = fleet._masters._dir
    if directory is None:
        return []
    found = subprocess.run(["pgrep", "-f", f"ControlPath={directory}/"], capture_output=True, text=True,
                           timeout=10)
    return [int(pid) for pid in found.stdout.split()]


def test_rsyncs_to_a_host_share_one_login_and_it_ends_with_the_fleet(sshd, options, target, remote_dir,
                                                                      tmp_path):
    make_tree(tmp_path / "src")
    fleet = Fleet([target], options)
    try:
        logins = accepted_logins(sshd)
        fleet.prepare_rsync([target])   # logs in now, in the background
        results = []
        threads = [threading.Thread(target=lambda n=n: results.append(
            fleet.rsync(target, tmp_path / "src", str(remote_dir / f"copy{n}")))) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert len(results) == 3 and all(r.ok for r in results), [r.summary() for r in results]
        assert all((remote_dir / f"copy{n}" / "app.py").is_file() for n in range(3))
        assert fleet.round_trips["web1"] == 3
        # One login in all: the master's.
        assert wait_for_logins(sshd, logins + 2) == logins + 1
        directory = fleet._masters._dir
        assert directory is not None and os.listdir(directory) and masters_of(fleet)
        assert os.stat(directory).st_mode & 0o077 == 0
    finally:
        pids = masters_of(fleet)
        directory = fleet._masters._dir
        fleet.close()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in pids)
    assert not os.path.exists(directory)


def test_rsync_logs_in_anew_when_its_master_has_ended(sshd, options, target, remote_dir, tmp_path):
    make_tree(tmp_path / "src")
    with Fleet([target], options) as fleet:
        assert fleet.rsync(target, tmp_path / "src", str(remote_dir / "one")).ok
        endpoint = fleet.endpoint(target)
        path = fleet._masters.path("web1", endpoint)
        subprocess.run(["ssh", "-o", f"ControlPath={path}", "-O", "exit", "x"], capture_output=True, timeout=10)
        deadline = time.monotonic() + 10
        while os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        logins = accepted_logins(sshd)
        again = fleet.rsync(target, tmp_path / "src", str(remote_dir / "two"))
        assert again.ok, again.summary()
        assert (remote_dir / "two" / "app.py").is_file()
        assert wait_for_logins(sshd, logins + 1) == logins + 1
        assert os.path.exists(path)   # a new master listens there


def test_rsync_link_dest_hard_links_unchanged_files(fleet, target,
                                                    remote_dir, tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    rel1, rel2 = remote_dir / "rel1", remote_dir / "rel2"
    assert fleet.rsync(target, src, str(rel1)).ok
    (src / "app.py").write_bytes(b"print('changed')\n")
    result = fleet.rsync(target, src, str(rel2), link_dest=str(rel1))
    assert result.ok, result.summary()
    assert result.files_transferred == 1
    unchanged = rel2 / "static/style.css"
    assert unchanged.stat().st_ino == (rel1 / "static/style.css").stat().st_ino
    assert unchanged.stat().st_nlink == 2
    assert (rel2 / "app.py").stat().st_ino != (rel1 / "app.py").stat().st_ino
    assert (rel2 / "app.py").read_bytes() == b"print('changed')\n"


def test_rsync_with_sudo_writes_where_the_user_cannot(fleet, target,
                                                      tmp_path):
    src = tmp_path / "src"
    make_tree(src)
    root_dir = Path(tempfile.mkdtemp(prefix="smship-root-", dir="/tmp"))
    try:
        root_dir.chmod(0o755)
        denied = fleet.rsync(target, src, str(root_dir / "rel"))
        assert not denied.ok and denied.error.startswith("web1: rsync")
        assert one_line(denied.error)
        allowed = fleet.rsync(target, src, str(root_dir / "rel"), sudo=True)
        assert allowed.ok, allowed.summary()
        assert (root_dir / "rel/app.py").stat().st_uid == 0
    finally:
        import shutil
        shutil.rmtree(root_dir, ignore_errors=True)


# -- host keys ----------------------------------------------------------------


def test_unknown_host_is_refused_with_a_clear_message(sshd, target,
                                                      tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    options = SSHOptions(known_hosts=known, ssh_config=None,
                         connect_timeout=5)
    with Fleet([target], options) as fleet:
        result = fleet.run(target, cmd("true"))
        assert not result.ok and result.exit_code == -1
        assert result.error.startswith(
            f"web1 ({LOOPBACK}:{sshd.port}): unknown host key ssh-ed25519")
        assert str(known) in result.error and one_line(result.error)
        with pytest.raises(ConnectError):
            fleet.run(target, cmd("true"), check=True)
        synced = fleet.rsync(target, tmp_path, "/tmp/never")
        assert not synced.ok
        assert synced.error.startswith(f"web1 ({LOOPBACK}:{sshd.port}): ")
        assert "verification failed" in synced.error
    assert known.read_text() == ""


def test_changed_host_key_is_refused_even_with_accept_unknown(sshd, target,
                                                              tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line(sshd.other_host_key_pub))
    for accept in (False, True):
        options = SSHOptions(known_hosts=known, ssh_config=None,
                             accept_unknown_hosts=accept, connect_timeout=5)
        with Fleet([target], options) as fleet:
            result = fleet.run(target, cmd("true"))
            assert not result.ok
            assert result.error.startswith(
                f"web1 ({LOOPBACK}:{sshd.port}): host key CHANGED")
            assert one_line(result.error)
            assert not fleet.rsync(target, tmp_path, "/tmp/never").ok
    assert known.read_text() == sshd.known_hosts_line(sshd.other_host_key_pub)


def test_accept_unknown_hosts_records_the_key(sshd, target, tmp_path,
                                              remote_dir):
    known = tmp_path / "new" / "known_hosts"
    trusting = SSHOptions(known_hosts=known, ssh_config=None,
                          accept_unknown_hosts=True, connect_timeout=5)
    with Fleet([target], trusting) as fleet:
        assert fleet.run(target, cmd("true")).ok
    [entry] = known.read_text().splitlines()
    assert entry.split() == sshd.known_hosts_line().split()[:3]
    assert known.stat().st_mode & 0o077 == 0
    strict = SSHOptions(known_hosts=known, ssh_config=None,
                        connect_timeout=5)
    with Fleet([target], strict) as fleet:
        assert fleet.run(target, cmd("true")).ok
        assert fleet.rsync(target, tmp_path / "new", str(remote_dir)).ok
    assert (remote_dir / "known_hosts").exists()


def test_wrong_key_fails_authentication_in_one_line(sshd, options, tmp_path):
    import subprocess
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    str(key)], check=True, timeout=30)
    stranger = Target("web9", LOOPBACK, sshd.port, user=SUDO_USER,
                      identity=key)
    with Fleet([stranger], options) as fleet:
        result = fleet.run(stranger, cmd("true"))
    assert result.error.startswith(f"web9 ({LOOPBACK}:{sshd.port}): "
                                   f"authentication failed for user "
                                   f"{SUDO_USER}")


# -- ssh config and jump hosts ------------------------------------------------


def write_config(sshd, tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "ssh_config"
    config.write_text(f"""\
Host smship-alias
    HostName {LOOPBACK}
    Port {sshd.port}
    User {SUDO_USER}
    IdentityFile {sshd.client_key}
{extra}""")
    return config


def test_ssh_config_alias_is_honoured_by_run_and_rsync(sshd, tmp_path,
                                                       remote_dir):
    options = SSHOptions(known_hosts=sshd.known_hosts,
                         ssh_config=write_config(sshd, tmp_path),
                         connect_timeout=5)
    aliased = Target("aliased", "smship-alias")
    with Fleet([aliased], options) as fleet:
        assert fleet.endpoint(aliased).port == sshd.port
        assert fleet.run(aliased, cmd("whoami"), check=True).stdout == \
            f"{SUDO_USER}\n"
        make_tree(tmp_path / "src")
        assert fleet.rsync(aliased, tmp_path / "src",
                           str(remote_dir / "r")).ok
        assert (remote_dir / "r/app.py").exists()


def test_ssh_config_proxyjump_is_honoured(sshd, tmp_path):
    extra = f"""\
Host smship-behind
    HostName {LOOPBACK}
    Port {sshd.port}
    User {SUDO_USER}
    IdentityFile {sshd.client_key}
    ProxyJump {PLAIN_USER}@{LOOPBACK}:{sshd.port}
"""
    options = SSHOptions(known_hosts=sshd.known_hosts,
                         ssh_config=write_config(sshd, tmp_path, extra),
                         connect_timeout=5)
    behind = Target("behind", "smship-behind")
    with Fleet([behind], options) as fleet:
        # The jump user may not forward, so success would mean the jump
        # was skipped; failing through it proves it is used.
        result = fleet.run(behind, cmd("true"))
    assert not result.ok and "jump" in result.error
    assert result.error.startswith(f"behind ({LOOPBACK}:{sshd.port}): ")


def test_jump_host_is_used_for_run_and_rsync(sshd, options, tmp_path,
                                             remote_dir):
    via = Target("inner", LOOPBACK, sshd.port, user=SUDO_USER,
                 identity=sshd.client_key,
                 jump=f"{SUDO_USER}@{LOOPBACK}:{sshd.port}")
    logins = accepted_logins(sshd)
    with Fleet([via], options) as fleet:
        for _ in range(3):
            assert fleet.run(via, cmd("whoami"), check=True).stdout == \
                f"{SUDO_USER}\n"
        make_tree(tmp_path / "src")
        synced = fleet.rsync(via, tmp_path / "src", str(remote_dir / "j"))
        assert synced.ok, synced.summary()
    assert (remote_dir / "j/app.py").exists()
    # Jump and target logins for run (reused), then both again for rsync.
    assert wait_for_logins(sshd, logins + 4) == logins + 4


def test_a_command_s_packets_leave_without_waiting_for_the_last_ones_ack(sshd, options, target):
    # Nagle's algorithm off on the TCP socket, the first jump hop's included (fleet._send_at_once).
    via = Target("inner", LOOPBACK, sshd.port, user=SUDO_USER, identity=sshd.client_key,
                 jump=f"{SUDO_USER}@{LOOPBACK}:{sshd.port}")
    with Fleet([target, via], options) as fleet:
        for each in (target, via):
            assert fleet.run(each, cmd("true")).ok
        direct = fleet.connection(target).transport.sock
        hop = next(iter(fleet._jump_connections.values())).transport.sock
        for sock in (direct, hop):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_jump_that_refuses_forwarding_fails_run_and_rsync(sshd, options,
                                                          tmp_path):
    via = Target("inner", LOOPBACK, sshd.port, user=SUDO_USER,
                 identity=sshd.client_key,
                 jump=f"{PLAIN_USER}@{LOOPBACK}:{sshd.port}")
    with Fleet([via], options) as fleet:
        result = fleet.run(via, cmd("true"))
        assert not result.ok and one_line(result.error)
        assert result.error.startswith(f"inner ({LOOPBACK}:{sshd.port}): "
                                       "jump host could not open a channel")
        assert not fleet.rsync(via, tmp_path, "/tmp/never").ok


# -- many hosts ---------------------------------------------------------------


def test_map_runs_bounded_in_parallel_and_isolates_a_failing_host(
        sshd, closed_port):
    closed = closed_port
    hosts = [Target(f"web{i}", LOOPBACK, sshd.port, user=SUDO_USER,
                    identity=sshd.client_key) for i in (1, 2, 3)]
    down = Target("down", LOOPBACK, closed, user=SUDO_USER,
                  identity=sshd.client_key)
    options = SSHOptions(known_hosts=sshd.known_hosts, ssh_config=None,
                         connect_timeout=5, parallel=2)
    lock = threading.Lock()
    active, peak = 0, 0

    def work(t: Target) -> str:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            return fleet.run(t, cmd("sh", "-c", "sleep 0.3; whoami"),
                             check=True).stdout.strip()
        finally:
            with lock:
                active -= 1

    with Fleet([*hosts, down], options) as fleet:
        outcomes = fleet.map(work)
        assert list(outcomes) == ["web1", "web2", "web3", "down"]
        assert [outcomes[f"web{i}"] for i in (1, 2, 3)] == [SUDO_USER] * 3
        assert isinstance(outcomes["down"], ConnectError)
        assert str(outcomes["down"]) == \
            f"down ({LOOPBACK}:{closed}): connection refused"
        assert peak == 2
        assert fleet.round_trips == {"web1": 1, "web2": 1, "web3": 1,
                                     "down": 0}


def test_unreachable_host_gives_one_line_everywhere(sshd, options, tmp_path,
                                                   closed_port):
    closed = closed_port
    down = Target("down", LOOPBACK, closed, user=SUDO_USER,
                  identity=sshd.client_key)
    expected = f"down ({LOOPBACK}:{closed}): connection refused"
    with Fleet([down], options) as fleet:
        result = fleet.run("down", cmd("true"))
        assert (result.ok, result.error) == (False, expected)
        synced = fleet.rsync(down, tmp_path, "/tmp/never")
        assert synced.error.startswith(f"down ({LOOPBACK}:{closed}): ")
        assert "Connection refused" in synced.error
        assert one_line(synced.error)


def test_rsync_sudo_that_needs_a_password_fails_clearly(sshd, options,
                                                        tmp_path):
    plain = Target("app1", LOOPBACK, sshd.port, user=PLAIN_USER,
                   identity=sshd.client_key)
    with Fleet([plain], options) as fleet:
        result = fleet.rsync(plain, tmp_path, "/tmp/never", sudo=True)
    assert not result.ok and one_line(result.error)
    assert result.error.startswith("app1: rsync ")
    assert "sudo for the remote rsync refused" in result.error
    assert "password" in result.error


# -- stream ----------------------------------------------------------------


def _processes_with(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in line and "pytest" not in line:
                found.append(line)
    return found


def test_stream_gives_lines_as_they_come_and_ends_the_remote_command_with_it(fleet, target):
    # A quiet remote command: nothing it writes would fail once the
    # connection is gone, so only the watcher can end it.  Its unique
    # duration is how /proc finds it.
    marker = f"3000.{secrets.randbelow(10 ** 9):09d}"
    quiet = f"echo first {marker}; sleep 1; echo second {marker}; exec sleep {marker}"
    process = fleet.stream(target, until_disconnected(["sh", "-c", quiet], description="quiet"))
    try:
        assert process.stdout.readline().decode() == f"first {marker}\n"
        assert process.stdout.readline().decode() == f"second {marker}\n"
        for _ in range(50):
            if any(line.startswith("sleep") for line in _processes_with(marker)):
                break
            time.sleep(0.1)
        assert any(line.startswith("sleep") for line in _processes_with(marker)), "the remote command should run"
    finally:
        process.terminate()
        process.wait(timeout=10)
    for _ in range(50):
        if not _processes_with(marker):
            break
        time.sleep(0.1)
    assert not _processes_with(marker), "the remote command outlived the connection"


def test_stream_of_a_command_that_ends_exits_zero_with_all_its_output(fleet, target):
    process = fleet.stream(target, cmd("printf", "a\\nb\\n"))
    out, _ = process.communicate(timeout=30)
    assert out == b"a\nb\n" and process.returncode == 0


# -- the agent -----------------------------------------------------------------


def test_the_agent_runs_as_root_without_importing_from_the_login_s_directory(fleet, target, remote_dir):
    from smship.remote import client as agent

    home = Path(pwd.getpwnam(SUDO_USER).pw_dir)
    marker = remote_dir / "imported"
    planted = [home / "json.py", home / "sitecustomize.py"]
    user = pwd.getpwnam(SUDO_USER)
    try:
        for trap in planted:
            trap.write_text(f"open({str(marker)!r}, 'w').close()\n")
            os.chown(trap, user.pw_uid, user.pw_gid)
        seen = agent.ask(fleet, target, agent.inspect(str(remote_dir / "app"), str(remote_dir / "lock")))
    finally:
        for trap in planted:
            trap.unlink(missing_ok=True)
    assert seen.exists is False and seen.current is None
    assert not marker.exists()
