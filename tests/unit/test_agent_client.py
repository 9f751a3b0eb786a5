"""The typed agent client: each op's request as the agent reads it, each answer as the agent writes it.

The answers come from the real agent, run here as a local process in a
temporary directory (the ops that need neither systemd nor another host);
only the SSH hop is replaced, by a fleet whose ``run`` executes locally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from smship.errors import SmshipError
from smship.inventory import App
from smship.remote import client as agent
from smship.remote.agent import key_fingerprint
from smship.ssh import Fleet, Result, Target

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the agent runs as root, as on a host")


class LocalFleet(Fleet):
    """A fleet whose hosts are this machine: the agent's command runs as a local process."""

    def __init__(self, names=("h1",), down=()):
        super().__init__([Target(n, "127.0.0.1") for n in (*names, *down)])
        self.down = set(down)

    def run(self, target, command, *, timeout=None, check=False):
        target = self._target(target)
        if target.name in self.down:
            return Result(target.name, str(command), -1, error=f"{target.name} (127.0.0.1:22): connection refused")
        argv = [sys.executable if command.argv[0] == "python3" else command.argv[0], *command.argv[1:]]
        done = subprocess.run(argv, input=command.stdin, capture_output=True, timeout=timeout)
        return Result(target.name, str(command), done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture
def fleet():
    return LocalFleet()


def one(fleet, request):
    return agent.ask(fleet, fleet.targets["h1"], request)


def test_each_builder_sends_the_fields_the_agent_reads():
    assert agent.inspect("/srv/a", "/srv/a/shared/deploy.lock").body() == \
        {"op": "inspect", "root": "/srv/a", "lock": "/srv/a/shared/deploy.lock"}
    assert agent.inspect("/srv/a", "/l", "/srv/a/activations", "/usr/bin/python3").body() == \
        {"op": "inspect", "root": "/srv/a", "lock": "/l", "activation_log": "/srv/a/activations",
         "python": "/usr/bin/python3"}
    assert agent.inspect("/srv/a", "/l", content=True).body() == \
        {"op": "inspect", "root": "/srv/a", "lock": "/l", "content": True}
    assert agent.lock("/l", agent.LockHolder(token="t", user="ann")).body() == \
        {"op": "lock", "path": "/l", "holder": {"token": "t", "user": "ann", "machine": None, "pid": None,
                                                "boot_id": None, "since": None, "command": None}}
    assert agent.unlock("/l", "t").body() == {"op": "unlock", "path": "/l", "token": "t"}
    assert agent.unlock("/l", None, force=True).body() == {"op": "unlock", "path": "/l", "token": None, "force": True}
    assert agent.audit("/a.log", {"who": "me"}).body() == {"op": "audit", "path": "/a.log", "entry": {"who": "me"}}
    assert agent.prune("/srv/a", 3, ["r1"], ["/srv/a/background"]).body() == \
        {"op": "prune", "root": "/srv/a", "keep": 3, "protect": ["r1"], "links": ["/srv/a/background"]}
    assert agent.activate("/srv/a", "r2", ["w.service"], None, None,
                          background=agent.background_link("/srv/a/background", False)).body()["background"] == \
        {"link": "/srv/a/background", "moves_current": False}
    assert agent.inspect("/srv/a", "/l", background="/srv/a/background").body()["background"] == "/srv/a/background"
    assert agent.activate("/srv/a", "r2", ["web.service"], None, "/log").body() == \
        {"op": "activate", "root": "/srv/a", "release": "r2", "restart": ["web.service"], "health": None,
         "activation_log": "/log"}
    assert agent.status("/srv/a", "/l", ["web.service"], None, None).body() == \
        {"op": "status", "root": "/srv/a", "lock": "/l", "units": ["web.service"], "health": None, "drain_flag": None}
    assert agent.status("/srv/a", "/l", ["p@%s"], None, None, postgres_unit="p@%s").body()["postgres_unit"] == "p@%s"
    assert agent.keystate("K", "/srv/a", "/env", ["web.service"]).body() == \
        {"op": "keystate", "name": "K", "root": "/srv/a", "env_file": "/env", "units": ["web.service"]}
    assert agent.setenv("/env", "K", "K=v").body() == {"op": "setenv", "env_file": "/env", "name": "K", "line": "K=v"}
    assert agent.facts({"/f": None}).body() == \
        {"op": "facts", "packages": [], "users": [], "paths": {"/f": None}, "services": [], "checks": {}}
    assert agent.apply([{"kind": "absent", "path": "/f"}]).body() == \
        {"op": "apply", "actions": [{"kind": "absent", "path": "/f"}]}
    assert agent.apply([], ["daemon-reload"]).body() == {"op": "apply", "actions": [], "handlers": ["daemon-reload"]}
    assert agent.hostos(App(name="a")).body() == {"op": "hostos", "python": "/usr/bin/python3"}
    assert agent.hostos(App(name="a", python="3.13")).body() == \
        {"op": "hostos", "python": "/usr/bin/python3.13", "packages": ["python3.13", "python3.13-venv"]}
    cluster = {"version": 16, "name": "main", "port": 5432, "database": "a"}
    assert agent.info("a", cluster).body() == {"op": "info", "stanza": "a", "cluster": cluster}
    assert agent.info("a", cluster).source != agent.inspect("/r", "/l").source
    assert agent.archive_status("a", cluster).body() == {"op": "archive_status", "stanza": "a", "cluster": cluster}
    assert agent.restore_point("a", cluster, "smship-r1").body() == \
        {"op": "restore_point", "stanza": "a", "cluster": cluster, "name": "smship-r1"}
    assert agent.backup("a", cluster, "incr").body() == {"op": "backup", "stanza": "a", "cluster": cluster,
                                                         "type": "incr"}
    assert agent.verify("a", cluster).body() == {"op": "verify", "stanza": "a", "cluster": cluster}
    assert agent.restore("a", cluster, point="smship-r1").body() == \
        {"op": "restore", "stanza": "a", "cluster": cluster, "point": "smship-r1"}
    assert agent.restore("a", cluster, time="2026-12-01 10:00:00+00").body() == \
        {"op": "restore", "stanza": "a", "cluster": cluster, "time": "2026-12-01 10:00:00+00"}


def test_inspect_reads_releases_lock_activations_and_interpreter(fleet, tmp_path):
    root = tmp_path / "app"
    for name, complete in (("r1", True), ("r2", False)):
        (root / "releases" / name).mkdir(parents=True)
        if complete:
            (root / "releases" / name / ".smship-complete").touch()
    os.symlink(root / "releases" / "r1", root / "current")
    log = tmp_path / "activations"
    log.write_text(json.dumps({"release": "r1", "previous": None}) + "\n")
    found = one(fleet, agent.inspect(str(root), str(tmp_path / "lock"), str(log), sys.executable))
    assert (found.current, found.releases, found.complete, found.lock, found.exists) == \
        ("r1", ["r1", "r2"], ["r1"], None, True)
    assert found.activations == [("r1", None)] and found.free_bytes > 0
    assert found.interpreter.version == "%d.%d.%d" % sys.version_info[:3] and found.interpreter.machine

    assert found.content is None                         # not asked for
    bare = one(fleet, agent.inspect(str(tmp_path / "none"), str(tmp_path / "lock"), content=True))
    assert (bare.exists, bare.releases, bare.activations, bare.interpreter, bare.content) == \
        (False, [], None, None, None)


def test_inspect_reads_the_live_releases_content_digest_when_asked(fleet, tmp_path):
    root = tmp_path / "app"
    for name, manifest in (("r1", {"id": "r1"}), ("r2", {"id": "r2", "content": "c2"})):
        (root / "releases" / name).mkdir(parents=True)
        (root / "releases" / name / "release.json").write_text(json.dumps(manifest))
    os.symlink(root / "releases" / "r1", root / "current")
    assert one(fleet, agent.inspect(str(root), str(tmp_path / "lock"), content=True)).content is None  # before digests
    os.remove(root / "current")
    os.symlink(root / "releases" / "r2", root / "current")
    assert one(fleet, agent.inspect(str(root), str(tmp_path / "lock"), content=True)).content == "c2"
    assert one(fleet, agent.inspect(str(root), str(tmp_path / "lock"))).content is None


def test_lock_refuses_a_second_holder_and_unlock_needs_the_token(fleet, tmp_path):
    path = str(tmp_path / "shared" / "deploy.lock")
    ann = agent.LockHolder(token="a", user="ann")
    assert one(fleet, agent.lock(path, ann)) == agent.LockAnswer(True, agent.LockHolder())
    held = one(fleet, agent.lock(path, agent.LockHolder(token="b")))
    assert not held.ok and held.holder == ann
    assert one(fleet, agent.inspect(str(tmp_path), path)).lock == ann
    assert not one(fleet, agent.unlock(path, "b")).ok
    assert one(fleet, agent.unlock(path, None, force=True)).ok
    assert one(fleet, agent.inspect(str(tmp_path), path)).lock is None


def test_requests_together_are_answered_in_order_and_one_that_fails_does_not_stop_the_rest(fleet, tmp_path):
    path, log = str(tmp_path / "deploy.lock"), tmp_path / "audit.log"
    assert one(fleet, agent.lock(path, agent.LockHolder(token="a"))).ok
    # prune of a root with no releases directory fails there; the unlock after it still runs.
    audited, pruned, unlocked = one(fleet, agent.together([agent.audit(str(log), {"result": "ok"}),
                                                           agent.prune(str(tmp_path / "nowhere"), 3, []),
                                                           agent.unlock(path, "a")]))
    assert audited == agent.Audited(True) and json.loads(log.read_text()) == {"result": "ok"}
    assert isinstance(pruned, SmshipError) and str(pruned).startswith("h1: the smship agent's prune failed: ")
    assert unlocked.ok and one(fleet, agent.inspect(str(tmp_path), path)).lock is None
    assert agent.together([agent.unlock("/l", "t")]).body() == \
        {"op": "together", "requests": [{"op": "unlock", "path": "/l", "token": "t"}]}


def test_the_lock_says_whether_a_halted_deploy_left_the_host_drained(fleet, tmp_path):
    path, flag = str(tmp_path / "deploy.lock"), tmp_path / "draining"
    assert one(fleet, agent.lock(path, agent.LockHolder(token="a"), str(flag))).drained is False
    assert one(fleet, agent.unlock(path, "a")).ok
    flag.write_text("drained by smship: deploy: web\n")
    taken = one(fleet, agent.lock(path, agent.LockHolder(token="a"), str(flag)))
    assert (taken.ok, taken.drained) == (True, True)


def test_audit_appends_and_prune_keeps_the_newest_and_the_protected(fleet, tmp_path):
    log = tmp_path / "log" / "audit.log"
    assert one(fleet, agent.audit(str(log), {"who": "me", "result": "ok"})) == agent.Audited(True)
    assert json.loads(log.read_text()) == {"who": "me", "result": "ok"}
    for name in ("r1", "r2", "r3", "r4"):
        (tmp_path / "releases" / name).mkdir(parents=True)
    assert one(fleet, agent.prune(str(tmp_path), 2, ["r1"])) == agent.Pruned(["r2"])


def test_activate_without_units_switches_records_and_reverts(fleet, tmp_path):
    for name in ("r1", "r2", "r3"):
        (tmp_path / "releases" / name).mkdir(parents=True)
        if name != "r3":
            (tmp_path / "releases" / name / ".smship-complete").touch()
    log = str(tmp_path / "activations")
    first = one(fleet, agent.activate(str(tmp_path), "r1", [], None, log))
    assert first == agent.Activation(ok=True, release="r1", previous=None, took=first.took) and first.took >= 0
    second = one(fleet, agent.activate(str(tmp_path), "r2", [], None, log))
    assert (second.ok, second.release, second.previous, second.record_error) == (True, "r2", "r1", None)
    assert one(fleet, agent.inspect(str(tmp_path), "/nonexistent", log)).activations == [("r1", None), ("r2", "r1")]
    half = one(fleet, agent.activate(str(tmp_path), "r3", [], None, log))
    assert (half.ok, half.previous, half.reverted) == (False, "r2", True)
    assert half.reason == "release r3 is not completely shipped to this host"


def test_a_drained_activation_puts_the_host_back_only_when_it_serves(fleet, tmp_path):
    for name in ("r1", "r2", "r3"):
        (tmp_path / "releases" / name).mkdir(parents=True)
        if name != "r3":
            (tmp_path / "releases" / name / ".smship-complete").touch()
    flag = tmp_path / "draining"

    def activate(release: str, note: str | None = "drained by a test\n", where: Path = flag):
        return one(fleet, agent.activate(str(tmp_path), release, [], None, None, drain_flag=str(where),
                                         drain_note=note))

    assert activate("r1").drained is False and not flag.exists()
    # Switched back to r2's predecessor and serving: back in the lb.
    reverted = activate("r3")
    assert (reverted.ok, reverted.reverted, reverted.drained, flag.exists()) == (False, True, False, False)
    # A host a halted deploy left drained, not drained again now: put back once it serves.
    flag.write_text("left by a halted deploy\n")
    assert activate("r2", note=None).drained is False and not flag.exists()
    # Nothing to switch back to: it stays out.
    (tmp_path / "releases" / "r1" / ".smship-complete").unlink()
    (tmp_path / "current").unlink()
    alone = activate("r1")
    assert (alone.ok, alone.drained, flag.read_text()) == (False, True, "drained by a test\n")
    flag.unlink()
    # A flag it cannot write: nothing was switched or restarted.
    refused = activate("r2", where=tmp_path / "missing" / "draining")
    assert (refused.ok, refused.untouched, refused.drained) == (False, True, False)
    assert "could not drain it from the load balancer" in refused.reason and not (tmp_path / "current").exists()


def test_facts_and_apply_read_and_change_paths(fleet, tmp_path):
    path, link = str(tmp_path / "f"), str(tmp_path / "l")
    found = one(fleet, agent.facts({path: None, link: None}))
    assert found.paths[path] == agent.PathFact("absent") and found.packages == {} and found.checks == {}
    content = "hello\n"
    done = one(fleet, agent.apply([
        {"kind": "file", "path": path, "owner": "root", "group": "root", "mode": "0640",
         "content": __import__("base64").b64encode(content.encode()).decode()},
        {"kind": "link", "path": link, "target": path}]))
    assert done == agent.Applied(True, [path, link])
    found = one(fleet, agent.facts({path: "0" * 64, link: None}))
    assert found.paths[path].type == "file" and found.paths[path].content == content
    assert (found.paths[path].owner, found.paths[path].mode) == ("root", "0640")
    assert found.paths[link] == agent.PathFact("link", "root", "root", "0777", target=path)
    failed = one(fleet, agent.apply([{"kind": "command", "argv": ["false"], "label": "no"}]))
    assert (failed.ok, failed.failed) == (False, "no") and failed.error


def test_setenv_and_keystate_name_generations_by_fingerprint(fleet, tmp_path):
    env = tmp_path / "app.env"
    env.write_text("A=1\nK=old\n")
    os.chmod(env, 0o640)
    assert not one(fleet, agent.setenv(str(tmp_path / "missing.env"), "K", "K=new")).ok
    assert one(fleet, agent.setenv(str(env), "K", "K=new")) == \
        agent.EnvLineSet(True, None, key_fingerprint("K", "new"))
    state = one(fleet, agent.keystate("K", str(tmp_path), str(env), []))
    assert state == agent.KeyState(None, key_fingerprint("K", "new"), {})
    assert state.holds(key_fingerprint("K", "new")) and not state.holds(key_fingerprint("K", "old"))


def test_hostos_reads_this_machine(fleet):
    found = one(fleet, agent.hostos(App(name="a", python=sys.executable)))
    assert found.host == "h1" and found.python_path == sys.executable
    assert found.python_version == "%d.%d.%d" % sys.version_info[:3] and found.machine == os.uname().machine


def test_facts_and_apply_answer_the_distribution_question_in_the_same_round_trip(fleet, tmp_path):
    question = agent.hostos(App(name="a", python=sys.executable))
    alone = one(fleet, question)
    found = one(fleet, agent.facts({str(tmp_path): None}, hostos=question))
    assert asdict(found.hostos) == asdict(alone) and found.paths[str(tmp_path)].type == "dir"
    assert one(fleet, agent.facts({str(tmp_path): None})).hostos is None
    applied = one(fleet, agent.apply([{"kind": "command", "argv": ["true"], "label": "t"}], hostos=question))
    assert applied.ok and asdict(applied.hostos) == asdict(alone)
    assert one(fleet, agent.apply([{"kind": "command", "argv": ["true"], "label": "t"}])).hostos is None


def test_status_reads_units_and_the_drain_flag(fleet, tmp_path):
    flag = tmp_path / "drained"
    flag.touch()
    found = one(fleet, agent.status(str(tmp_path), str(tmp_path / "lock"), [], None, str(flag)))
    assert (found.current, found.units, found.ready, found.drained) == (None, {}, None, True)
    assert found.answer["free_bytes"] == found.free_bytes


def test_status_names_the_clusters_unit_as_the_hosts_distribution_facts_would(fleet, tmp_path, monkeypatch):
    from smship.hostroles import POSTGRES_CLUSTER_UNIT
    from smship.remote import agent as program

    units = [POSTGRES_CLUSTER_UNIT, "nginx.service"]
    # The same round trip reads the major that a separate hostos round trip would give.
    major = one(fleet, agent.hostos(App(name="a", python=sys.executable))).postgres_major(None)
    found = one(fleet, agent.status(str(tmp_path), str(tmp_path / "lock"), units, None, None,
                                    postgres_unit=POSTGRES_CLUSTER_UNIT))
    assert list(found.units) == [POSTGRES_CLUSTER_UNIT % major, "nginx.service"]
    request = {"units": units, "postgres_unit": POSTGRES_CLUSTER_UNIT}
    for majors, unit in ((([15, 17], [15, 17, 18]), "postgresql@17-main.service"),
                         (([], [16]), "postgresql@16-main.service"),
                         (([], []), "postgresql.service")):
        monkeypatch.setattr(program, "_postgres_majors", lambda: majors)
        assert program._units(request) == [unit, "nginx.service"]
    assert program._units({"units": units}) == units


def test_checkfacts_reads_a_release_and_an_env_file(fleet, tmp_path):
    from smship.checklist.facts import KEY_RULE

    (tmp_path / "releases" / "r1").mkdir(parents=True)
    (tmp_path / "releases" / "r1" / "release.json").write_text(json.dumps({"alembic_heads": ["0002"]}))
    os.symlink(tmp_path / "releases" / "r1", tmp_path / "current")
    env = tmp_path / "env"
    env.write_text("APP_ENV=production\nDATABASE_URL=postgresql+asyncpg://u:p@db/app\nSECRET_KEY=x\n")
    found = one(fleet, agent.checkfacts({
        "root": str(tmp_path), "frontend_manifest": "static/manifest.json", "env_file": str(env),
        "plain": ["APP_ENV"], "key_rule": KEY_RULE, "database_url": "DATABASE_URL", "secret_key": "SECRET_KEY",
        "units": [], "beat_unit": "smship-test-no-such-beat.service", "nginx": False, "certificate": None,
        "drain_flag": None, "python": sys.executable}))
    assert (found.current, found.alembic_heads, found.frontend, found.units) == ("r1", ["0002"], False, {})
    assert found.env.values == {"APP_ENV": "production"} and found.env.database_scheme == "postgresql+asyncpg"
    assert found.env.secret_key_weakness     # "x" is too short: only the verdict comes back
    assert found.beat != "active" and (found.nginx, found.nginx_error, found.drained) == (None, None, False)
    assert found.os.python == "%d.%d.%d" % sys.version_info[:3]


def test_a_refusal_of_the_db_host_names_it():
    request = agent.info("a", "16/main")
    assert request.read("db1", {"ok": True, "info": {}}) == agent.StanzaInfo(None, None, None, [], [])
    with pytest.raises(SmshipError, match="^db1: no stanza$"):
        request.read("db1", {"ok": False, "error": "no stanza"})


def test_ask_all_gives_each_host_its_answer_or_its_failure(tmp_path):
    fleet = LocalFleet(("h1", "h2"), down=("h3",))
    answers = agent.ask_all(fleet, lambda t: agent.audit(str(tmp_path / f"{t.name}.log"), {"host": t.name}))
    assert list(answers) == ["h1", "h2", "h3"] and not answers.ok
    assert answers.succeeded == {"h1": agent.Audited(True), "h2": agent.Audited(True)}
    assert str(answers.failed["h3"]) == "h3 (127.0.0.1:22): connection refused"
    assert json.loads((tmp_path / "h2.log").read_text()) == {"host": "h2"}


def test_an_answer_that_is_not_json_names_the_host(fleet):
    broken = agent.Request("inspect", {}, lambda _, a: a, source="print('oops')")
    with pytest.raises(SmshipError, match="^h1: the smship agent answered something that is not JSON"):
        one(fleet, broken)


def test_the_bootstrap_reuses_the_agents_compiled_code_only_from_a_directory_only_its_owner_writes(tmp_path):
    import subprocess
    import sys

    from smship.remote import BOOTSTRAP

    home = tmp_path / "agent-cache"
    bootstrap = BOOTSTRAP.replace('"/var/cache/smship-agent"', repr(str(home)))
    assert bootstrap != BOOTSTRAP

    def run(source: str, digest: str = "d1") -> subprocess.CompletedProcess:
        program = source.encode()
        return subprocess.run([sys.executable, "-c", bootstrap, digest, str(len(program))],
                              input=program + "in".encode(), capture_output=True, timeout=30)

    first = run("import sys\nprint('hello', sys.stdin.read(), len(sys.argv))")
    assert first.stdout == b"hello in 1\n", first.stderr
    assert oct(home.stat().st_mode & 0o777) == "0o700" and len(list(home.iterdir())) == 1
    # The same digest runs the cached code: this source is never compiled, and the request after it
    # is still the agent's to read.
    assert run("def (").stdout == b"hello in 1\n"
    # A directory others may write is not trusted: the source given is compiled.
    home.chmod(0o770)
    assert b"SyntaxError" in run("def (").stderr
    home.chmod(0o700)
    assert run("print('other')", "d2").stdout == b"other\n" and len(list(home.iterdir())) == 2


def test_the_agents_program_travels_on_stdin_so_sudo_logs_only_the_short_bootstrap():
    from smship.remote import AGENT_SOURCE, BOOTSTRAP, agent_command, agent_request
    from smship.ssh.argv import remote_line

    request = {"op": "inspect", "root": "/srv/a", "secret": "s3cr3t"}
    command = agent_command(request)
    line = remote_line(command)
    # sudo writes the whole command line to the host's journal on every call.
    assert len(line) < len(BOOTSTRAP) + 200 < len(AGENT_SOURCE) / 10
    assert "def activate" not in line and "s3cr3t" not in line
    assert command.stdin.startswith(AGENT_SOURCE.encode())
    assert agent_request(command) == request


class LosingFleet:
    """Answers each agent call with the next of ``results`` (a Result, its stdout the answer)."""

    def __init__(self, *exit_codes: int):
        self.exit_codes, self.calls = list(exit_codes), 0

    def run(self, target, command, timeout=None):
        from smship.ssh import Result

        self.calls += 1
        code = self.exit_codes.pop(0)
        answer = '{"current": "r1", "releases": [], "lock": null, "free_bytes": 1, "exists": true, "ok": true}'
        if code == DROPPED:     # as Fleet.run says a connection that went down under the command
            return Result(target.name, command.description, -1, connection_lost=True,
                          error=f"{target.name}: {command.description}: connection lost: the connection closed")
        return Result(target.name, command.description, code, stdout=answer if code == 0 else "")


DROPPED = "the connection went down"


class OneHost:
    name = "web1"


def test_a_read_only_question_whose_agent_was_lost_is_asked_once_more_and_a_change_never():
    fleet = LosingFleet(-1, 0)
    assert agent.ask(fleet, OneHost(), agent.inspect("/srv/a", "/l")).current == "r1"
    assert fleet.calls == 2
    # Lost twice: said, naming the host.
    with pytest.raises(SmshipError, match="web1: smship agent inspect: exit -1"):
        agent.ask(LosingFleet(-1, -1, 0), OneHost(), agent.inspect("/srv/a", "/l"))
    # A request that changes the host is never sent twice: it may have done its work.
    fleet = LosingFleet(-1, 0)
    with pytest.raises(SmshipError, match="exit -1"):
        agent.ask(fleet, OneHost(), agent.activate("/srv/a", "r2", ["w.service"], None, None))
    assert fleet.calls == 1
    # Its whole connection went down (logind stopping the user's slice takes the session's sshd too):
    # asked once more, over a new connection; a change, never.
    fleet = LosingFleet(DROPPED, 0)
    assert agent.ask(fleet, OneHost(), agent.inspect("/srv/a", "/l")).current == "r1" and fleet.calls == 2
    with pytest.raises(SmshipError, match="web1: smship agent inspect: connection lost: the connection closed"):
        agent.ask(LosingFleet(DROPPED, DROPPED), OneHost(), agent.inspect("/srv/a", "/l"))
    fleet = LosingFleet(DROPPED, 0)
    with pytest.raises(SmshipError, match="connection lost"):
        agent.ask(fleet, OneHost(), agent.activate("/srv/a", "r2", ["w.service"], None, None))
    assert fleet.calls == 1
    # A plain failure is not a lost agent.
    fleet = LosingFleet(1, 0)
    with pytest.raises(SmshipError, match="exit 1"):
        agent.ask(fleet, OneHost(), agent.inspect("/srv/a", "/l"))
    assert fleet.calls == 1
