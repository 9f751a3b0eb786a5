"""Deploy, rollback and rotation orchestration driven against an in-memory fleet (tests/fakefleet.py).

The lab tests prove the same stories on real hosts in minutes; these prove
the order and the failure paths in seconds: the migration runs once before
any restart, a failing batch halts the roll and reverts only itself, hosts
not reached keep the old release, and the lock is released on every exit.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import yaml

from smship import secretkey
from smship.checklist.checks import NAMES
from smship.context import EnvContext, targets_of
from smship.deploy import deploy as deploy_command
from smship.deploy.rollback import _rollback
from smship.errors import SmshipError
from smship.hostroles import app_units, is_app_host
from smship.release.files import hash_tree
from smship.release.model import Release, content_digest
from smship.rotate import rotate as rotate_command
from tests.fakefleet import FakeFleet, FakeHost

WEB = ["web1", "web2", "web3"]
ALL_CHECKS = list(NAMES)


OLD_KEY = secretkey.generate()


def inventory(tmp_path: Path, *, lb: bool = True, batch_size: int = 1, after_first_web_batch: bool = False) -> Path:
    source = tmp_path / "app"
    source.mkdir()
    secrets = tmp_path / "prod.env"
    secrets.write_text(f"SM_SECRET_KEY={OLD_KEY}\nSM_DB_PASSWORD=db-password-1\nSM_REDIS_PASSWORD=redis-password-1\n")
    secrets.chmod(0o600)
    hosts = [{"name": n, "address": f"10.0.0.{i}", "roles": ["web"]} for i, n in enumerate(WEB, 11)]
    hosts += [{"name": "jobs1", "address": "10.0.0.21", "roles": ["worker", "beat"]},
              {"name": "db1", "address": "10.0.0.31", "roles": ["db"]}]
    if lb:
        hosts.append({"name": "lb1", "address": "10.0.0.41", "roles": ["lb"]})
    data = {"app": {"name": "shop", "source": str(source)},
            "environments": {"prod": {
                "domain": "shop.example.com",
                "tls": {"source": "files", "certificate": str(tmp_path / "c.pem"), "key": str(tmp_path / "k.pem")},
                "secrets": {"backend": "file", "path": str(secrets)},
                "web": {"batch_size": batch_size},
                "worker": {"after_first_web_batch": after_first_web_batch},
                "env": {"SM_ENVIRONMENT": "production"},
                "hosts": hosts}}}
    path = tmp_path / "smship.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def fleet_of(tmp_path):
    """(ctx, fleet) for an environment whose app hosts all run release r0."""
    def make(**options):
        ctx = EnvContext.open("prod", inventory(tmp_path, **options), output="json")
        hosts = {h.name: FakeHost(h.name) for h in ctx.env.hosts}
        for spec in ctx.env.hosts:
            host = hosts[spec.name]
            host.live("r0")
            host.contents["r0"] = "d0" * 32         # a release the hosts run before the test deploys one
            if {"worker", "beat"} & set(spec.roles):
                host.background = "r0"
            if is_app_host(spec):
                host.env_file = {"SM_SECRET_KEY": OLD_KEY}
                host.units = {unit: dict(host.env_file) for unit in app_units(ctx.layout, spec.roles)}
        return ctx, FakeFleet(targets_of(ctx), hosts)
    return make


def make_release(where: Path, release_id: str, main: str = "app = None\n", deps_id: str = "0123456789abcdef",
                 dirty: bool = False, git_sha: str = "0" * 40) -> Release:
    """A release tree with its manifest and content digest, as a build leaves it."""
    path = where / release_id
    path.mkdir()
    (path / "main.py").write_text(main)
    (path / "RELEASE_ID").write_text(release_id + "\n")
    files, links = hash_tree(path)
    manifest = {"id": release_id, "git_sha": git_sha, "dirty": dirty, "deps_id": deps_id, "files": files,
                "symlinks": links, "target": "cpython 3.13.5 linux x86_64 glibc 2.41"}
    manifest["content"] = content_digest(manifest)
    (path / "release.json").write_text(json.dumps(manifest))
    return Release(release_id, path, manifest, where / "wheels", deps_id, ())


@pytest.fixture
def release(tmp_path, monkeypatch):
    """A release r1 on disk, handed to deploy instead of building one."""
    built = make_release(tmp_path, "r1")
    deploys(built, monkeypatch)
    return built


def deploys(release: Release, monkeypatch) -> None:
    """The next deploy builds ``release``, from the commit its manifest names."""
    monkeypatch.setattr(deploy_command, "obtain_release", lambda *args, **kwargs: release)
    monkeypatch.setattr(deploy_command, "commit_of", lambda *args: release.manifest["git_sha"])


def run_deploy(ctx, fleet, force: bool = False, only: list[str] | None = None) -> bool:
    chosen = [h for h in ctx.env.hosts if {"web", "worker", "beat"} & set(h.roles) and h.name in (only or [h.name])]
    return deploy_command._deploy(ctx, fleet, ctx.layout, chosen, None, "HEAD", False, ALL_CHECKS, force)


def restarts(fleet) -> list[tuple[str, str]]:
    return [(host, release) for _, host, release, _ in fleet.happened("activate")]


def tiers(fleet, after_first_web_batch: bool = False) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The web hosts' restarts in order, and the worker host's (``after_first_web_batch``: which began only
    after the first web batch, alongside the later ones)."""
    seen = restarts(fleet)
    background = [r for r in seen if r[0] == "jobs1"]
    if background and after_first_web_batch:
        assert seen[0][0] != "jobs1", seen
    return [r for r in seen if r[0] != "jobs1"], background


def rolled(release: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return [(name, release) for name in WEB], [("jobs1", release)]


def migrations(fleet) -> list[str]:
    return [host for _, host, what in fleet.happened("command") if what.startswith("alembic upgrade head")]


def no_lock_left(fleet) -> bool:
    return all(h.lock is None for h in fleet.hosts.values()) and \
        len(fleet.happened("lock")) == len(fleet.happened("unlock")) == len(fleet.hosts)


def test_a_deploy_migrates_once_before_the_first_restart_then_rolls_every_host(fleet_of, release):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    assert migrations(fleet) == ["web1"]
    first_restart = next(i for i, e in enumerate(fleet.events) if e[0] == "activate")
    migrated = next(i for i, e in enumerate(fleet.events) if e[0] == "command" and e[2].startswith("alembic"))
    shipped = max(i for i, e in enumerate(fleet.events) if e[0] == "command" and e[2].endswith("finish release r1"))
    settings = max(i for i, e in enumerate(fleet.events) if e[0] == "file" and e[2] == ctx.layout.env_file)
    # complete everywhere, env files written, then migrated, then restarted
    assert shipped < settings < migrated < first_restart
    # rsync's connections were asked for ahead, before the checklist and the lock.
    prepared = [i for i, e in enumerate(fleet.events) if e[0] == "prepare rsync"]
    assert sorted(fleet.events[i][1] for i in prepared) == sorted(APP_HOSTS)
    assert max(prepared) < min(i for i, e in enumerate(fleet.events) if e[0] in ("lock", "rsync"))
    assert tiers(fleet) == rolled("r1")
    assert all(fleet.hosts[n].current == "r1" for n in [*WEB, "jobs1"]) and fleet.hosts["jobs1"].background == "r1"
    assert fleet.hosts["db1"].current == "r0"           # not an app host: never switched
    assert no_lock_left(fleet)
    assert {e["result"] for h in fleet.hosts.values() for e in h.audit} == {"ok"}


def test_a_deploy_brings_the_env_files_of_the_hosts_it_deploys_in_step_with_the_inventory(fleet_of, release):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    env_file = ctx.layout.env_file
    written = {e[1] for e in fleet.happened("file") if e[2] == env_file}
    assert written == {*WEB, "jobs1"}
    assert b"SM_ENVIRONMENT=production" in fleet.hosts["web1"].files[env_file]
    assert OLD_KEY.encode() in fleet.hosts["web1"].files[env_file]
    fleet.events.clear()
    assert run_deploy(ctx, fleet)                      # unchanged: nothing written again
    assert [e for e in fleet.happened("file") if e[2] == env_file] == []


def test_each_web_batch_is_drained_from_the_lb_before_its_restart_and_put_back_after(fleet_of, release):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    flag = ctx.layout.drain_flag
    web1 = [e[0] for e in fleet.events if e[1] == "web1" and (e[0] == "activate" or e[-1] == flag)]
    assert web1 == ["file", "activate", "absent"]
    assert not any(ctx.layout.drain_flag in h.files for h in fleet.hosts.values())
    # Each batch's time beside its hosts' own: what the bench reports as smship's overhead.
    batches = ctx.reporter.data["batches"]
    pairs = [(b["title"], b["hosts"]) for b in batches]
    # The workers' batch ends alongside a later web batch.
    assert sorted(pairs) == [("deploy: web", [name]) for name in WEB] + [("deploy: workers", ["jobs1"])]
    assert all(b["on_hosts"] == 0.25 and b["seconds"] >= 0 for b in batches), batches


def test_each_web_batch_s_agents_are_begun_ahead_and_each_takes_its_activation(fleet_of, release):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    # The first web batch's and the workers' while the migration ran; a later batch's while the batch
    # before restarted.
    assert sorted(e[1] for e in fleet.happened("begin")) == ["jobs1", "web1", "web2", "web3"]
    assert sorted(e[1] for e in fleet.happened("finish begun")) == ["jobs1", "web1", "web2", "web3"]
    assert fleet.happened("cancel begun") == []
    for name in ("web1", "web2", "web3", "jobs1"):
        mine = [e[0] for e in fleet.events if len(e) > 1 and e[1] == name and e[0] in ("begin", "finish begun",
                                                                                      "activate")]
        assert mine == ["begin", "finish begun", "activate"], mine


def test_the_agents_begun_beside_a_failed_migration_are_cancelled(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.fail_command(lambda host, what: what.startswith("alembic upgrade head"))
    assert not run_deploy(ctx, fleet)
    assert sorted(e[1] for e in fleet.happened("cancel begun")) == ["jobs1", "web1"]
    assert fleet.happened("finish begun") == [] and restarts(fleet) == []
    assert no_lock_left(fleet)


def test_workers_kept_behind_the_first_web_batch_have_their_agents_begun_ahead_too(fleet_of, release):
    ctx, fleet = fleet_of(after_first_web_batch=True)
    assert run_deploy(ctx, fleet)
    assert tiers(fleet, after_first_web_batch=True) == rolled("r1")
    assert sorted(e[1] for e in fleet.happened("begin")) == ["jobs1", "web1", "web2", "web3"]
    assert sorted(e[1] for e in fleet.happened("finish begun")) == ["jobs1", "web1", "web2", "web3"]
    assert fleet.happened("cancel begun") == []
    for name in ("web2", "web3", "jobs1"):
        mine = [e[0] for e in fleet.events if len(e) > 1 and e[1] == name and e[0] in ("begin", "finish begun",
                                                                                      "activate")]
        assert mine == ["begin", "finish begun", "activate"], mine


def test_the_agents_begun_for_a_batch_a_failure_halted_are_cancelled(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.hosts["web2"].unhealthy.add("r1")
    assert not run_deploy(ctx, fleet)
    assert [e[1] for e in fleet.happened("cancel begun")] == ["web3"]
    assert not [e for e in fleet.happened("activate") if e[1] == "web3"]


def test_the_workers_agents_begun_beside_a_first_batch_that_failed_are_cancelled(fleet_of, release):
    ctx, fleet = fleet_of(after_first_web_batch=True)
    fleet.hosts["web1"].unhealthy.add("r1")
    assert not run_deploy(ctx, fleet)
    assert sorted(e[1] for e in fleet.happened("cancel begun")) == ["jobs1", "web2"]
    assert not [e for e in fleet.happened("activate") if e[1] in ("jobs1", "web2")]
    assert fleet.hosts["jobs1"].background == "r0"


def test_the_workers_start_with_the_first_web_batch_and_go_back_when_it_fails(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.hosts["web1"].unhealthy.add("r1")
    assert not run_deploy(ctx, fleet)
    steps = [t["step"] for t in ctx.reporter.data["timeline"]]
    assert steps.index("deploy: workers: batch 1/1: jobs1") < steps.index("deploy: web: batch 1/3: web1"), steps
    assert tiers(fleet) == ([("web1", "r1")], [("jobs1", "r1"), ("jobs1", "r0")])
    assert fleet.hosts["jobs1"].background == "r0" and fleet.hosts["jobs1"].current == "r0"
    assert [e[1] for e in fleet.happened("cancel begun")] == ["web2"]
    assert {e["result"] for h in fleet.hosts.values() for e in h.audit} == {"failed: web roll"}
    assert no_lock_left(fleet)


def test_the_lock_says_which_web_hosts_a_halted_deploy_left_drained_and_the_roll_asks_no_more(
        fleet_of, release, capsys):
    ctx, fleet = fleet_of()
    flag = ctx.layout.drain_flag
    for name in ("web2", "web3"):
        fleet.hosts[name].files[flag] = b"drained by smship: deploy: web\n"
    asked = []
    fleet.interrupt(lambda host, request: asked.append(request) and False)
    assert run_deploy(ctx, fleet)
    # web1 alone served the lb: draining it would have left the lb nowhere to send a request.
    assert "web1: not drained from the load balancer, no other web host serves it" in capsys.readouterr().err
    assert [e for e in fleet.happened("file") if e[1] == "web1" and e[2] == flag] == []
    # The others were drained (web1 served meanwhile) and each put itself back once activated.
    assert [e[1] for e in fleet.happened("file") if e[2] == flag] == ["web2", "web3"]
    assert not any(flag in h.files for h in fleet.hosts.values())
    assert not [r for r in asked if r["op"] == "facts" and flag in r["paths"]]


def test_a_failing_batch_reverts_itself_halts_the_roll_and_later_hosts_keep_the_old_release(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.hosts["web2"].unhealthy.add("r1")
    serving = dict(fleet.hosts["web2"].units)
    assert not run_deploy(ctx, fleet)
    # web2 started r1 in its idle web slot and stopped it there: r0's slot kept serving, never restarted.
    # The worker host took r1 once web1 was healthy, and went back to r0 when web2 failed.
    assert tiers(fleet) == ([("web1", "r1"), ("web2", "r1")], [("jobs1", "r1"), ("jobs1", "r0")])
    assert fleet.hosts["jobs1"].background == "r0"
    assert fleet.hosts["web2"].units == serving
    assert [r.message for r in ctx.reporter.reports if r.host == "web2" and r.status == "failed"] == \
        ["r1 is not healthy; r0 kept serving; the new release never took a request"]
    assert [fleet.hosts[n].current for n in [*WEB, "jobs1"]] == ["r1", "r0", "r0", "r0"]
    assert migrations(fleet) == ["web1"]
    assert no_lock_left(fleet)
    assert {e["result"] for h in fleet.hosts.values() for e in h.audit} == {"failed: web roll"}
    assert not any(ctx.layout.drain_flag in h.files for h in fleet.hosts.values())  # web2 serves r0 again


def test_workers_that_fail_stop_the_web_roll_before_its_next_batch(fleet_of, release, capsys):
    import time

    ctx, fleet = fleet_of()
    fleet.hosts["jobs1"].unhealthy.add("r1")
    # The worker host answers while web2's batch runs, before web3's would begin.
    pause = {"jobs1": 0.1, "web2": 0.6}
    fleet.interrupt(lambda host, request: request["op"] == "activate" and bool(time.sleep(pause.get(host, 0))))
    assert not run_deploy(ctx, fleet)
    assert tiers(fleet) == ([("web1", "r1"), ("web2", "r1")], [("jobs1", "r1"), ("jobs1", "r0")])
    assert [fleet.hosts[n].current for n in [*WEB, "jobs1"]] == ["r1", "r1", "r0", "r0"]
    assert fleet.hosts["jobs1"].background == "r0"
    said = capsys.readouterr().err
    assert "web hosts not restarted, still on their old release: web3" in said, said
    assert {e["result"] for h in fleet.hosts.values() for e in h.audit} == {"failed: workers"}
    assert no_lock_left(fleet)


@pytest.mark.parametrize("older", ["beat from current", "the worker unit before slots"])
def test_a_unit_of_an_older_smship_fails_the_preflight_yet_releases_still_lists(fleet_of, release, monkeypatch, older):
    from smship.deploy import rollback as rollback_command

    ctx, fleet = fleet_of()
    if older == "beat from current":
        fleet.hosts["jobs1"].workdirs = {"shop-worker@a.service": "/srv/shop/worker/slot-a",
                                         "shop-beat.service": "/srv/shop/current"}
        said = ("jobs1: shop-beat.service runs from /srv/shop/current, not /srv/shop/background .*"
                "run 'smship provision prod' first")
    else:
        fleet.hosts["jobs1"].workdirs = {"shop-worker.service": "/srv/shop/background",
                                         "shop-beat.service": "/srv/shop/background"}
        said = ("jobs1: shop-worker.service is the worker unit of an older smship; run 'smship provision prod' "
                "first to hand it over to the worker slots")
    with pytest.raises(Exception, match=said):
        run_deploy(ctx, fleet)
    assert fleet.happened("rsync") == [] and all(h.lock is None for h in fleet.hosts.values()) \
        and restarts(fleet) == []
    monkeypatch.setattr(rollback_command, "open_fleet", lambda ctx, hosts=None: fleet)
    assert rollback_command.releases(ctx)
    assert ctx.reporter.data["releases"]["jobs1"] == [{"id": "r0", "live": True, "complete": True}]


def test_the_release_builds_while_the_checklist_asks_the_hosts_and_its_lines_follow_the_checklists(
        fleet_of, release, monkeypatch):
    ctx, fleet = fleet_of()
    began = threading.Event()

    def build(*args, report=None, **kwargs):
        report.step("building (test)")
        began.set()
        return release

    def checklist(*args, **kwargs):
        assert began.wait(10), "the build had not begun while the checklist ran"
        ctx.reporter.step("checklist (test)")

    monkeypatch.setattr(deploy_command, "obtain_release", build)
    monkeypatch.setattr(deploy_command, "preflight", checklist)
    assert run_deploy(ctx, fleet)
    steps = [t["step"] for t in ctx.reporter.data["timeline"]]
    assert steps.index("checklist (test)") < steps.index("building (test)"), steps
    assert tiers(fleet) == rolled("r1")


def test_a_failed_checklist_waits_for_the_build_under_way_and_changes_nothing(fleet_of, release, monkeypatch):
    ctx, fleet = fleet_of()
    ended = threading.Event()

    def build(*args, **kwargs):
        time.sleep(0.3)
        ended.set()
        return release

    def checklist(*args, **kwargs):
        raise SmshipError("preflight failed (test)")

    monkeypatch.setattr(deploy_command, "obtain_release", build)
    monkeypatch.setattr(deploy_command, "preflight", checklist)
    with pytest.raises(SmshipError, match="preflight failed"):
        run_deploy(ctx, fleet)
    assert ended.is_set()
    # The lock, taken beside the checklist, was given back.
    assert no_lock_left(fleet) and fleet.happened("rsync") == [] and restarts(fleet) == []


def test_a_build_that_fails_beside_the_checklist_fails_the_deploy_and_gives_the_lock_back(
        fleet_of, release, monkeypatch):
    ctx, fleet = fleet_of()

    def build(*args, **kwargs):
        raise SmshipError("no uv.lock (test)")

    monkeypatch.setattr(deploy_command, "obtain_release", build)
    with pytest.raises(SmshipError, match="no uv.lock"):
        run_deploy(ctx, fleet)
    assert no_lock_left(fleet) and fleet.happened("rsync") == []


def test_the_lock_is_taken_while_the_checklist_runs(fleet_of, release, monkeypatch):
    ctx, fleet = fleet_of()
    locked = threading.Event()
    lock_op = fleet._op_lock

    def lock(host, request):
        answer = lock_op(host, request)
        if len(fleet.happened("lock")) == len(fleet.hosts):
            locked.set()
        return answer

    def checklist(*args, **kwargs):
        assert locked.wait(10), "the lock was not taken while the checklist ran"

    fleet._op_lock = lock
    monkeypatch.setattr(deploy_command, "preflight", checklist)
    assert run_deploy(ctx, fleet)
    assert tiers(fleet) == rolled("r1") and no_lock_left(fleet)


def test_a_deploy_the_lock_refuses_says_so_rather_than_what_its_checks_saw_of_the_other_deploy(
        fleet_of, release, monkeypatch):
    ctx, fleet = fleet_of()
    fleet.hosts["web2"].lock = {"token": "theirs", "user": "ann", "machine": "elsewhere", "pid": 1,
                                "command": "deploy prod", "since": time.time()}

    def checklist(*args, **kwargs):
        raise SmshipError("preflight failed (test): beat is restarting")

    monkeypatch.setattr(deploy_command, "preflight", checklist)
    with pytest.raises(SmshipError, match="web2: another deploy holds the lock: ann@elsewhere"):
        run_deploy(ctx, fleet)
    assert fleet.hosts["web2"].lock["token"] == "theirs"
    assert all(h.lock is None for n, h in fleet.hosts.items() if n != "web2")


def test_a_stale_lock_removed_beside_the_checklist_is_said_after_it(fleet_of, release, monkeypatch, capsys):
    import socket

    ctx, fleet = fleet_of()
    fleet.hosts["web2"].lock = {"token": "gone", "user": "ann", "machine": socket.gethostname(), "pid": 2 ** 22 + 7,
                                "command": "deploy prod", "since": time.time()}

    def checklist(*args, **kwargs):
        ctx.reporter.step("checklist (test)")
        time.sleep(0.2)      # the lock's taking, and its warning, happen meanwhile

    monkeypatch.setattr(deploy_command, "preflight", checklist)
    assert run_deploy(ctx, fleet)
    said = capsys.readouterr().err
    assert "web2: removing a stale deploy lock: ann@" in said, said
    assert said.index("checklist (test)") < said.index("removing a stale deploy lock"), said
    assert all(h.lock is None for h in fleet.hosts.values())


def test_a_deploy_the_lock_refuses_shows_its_checklist_and_changes_nothing(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.hosts["db1"].lock = {"token": "theirs", "user": "ann", "machine": "elsewhere", "pid": 1,
                               "command": "deploy prod", "since": time.time()}
    with pytest.raises(SmshipError, match="db1: another deploy holds the lock: ann@elsewhere"):
        run_deploy(ctx, fleet)
    assert ctx.reporter.data["checks"], "the checklist was not shown"
    assert fleet.happened("rsync") == [] and restarts(fleet) == []
    assert fleet.hosts["db1"].lock["token"] == "theirs"
    assert all(h.lock is None for n, h in fleet.hosts.items() if n != "db1")


def test_a_failed_migration_restarts_nothing(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.fail_command(lambda host, what: what.startswith("alembic upgrade head"))
    assert not run_deploy(ctx, fleet)
    assert restarts(fleet) == [] and migrations(fleet) == ["web1"]
    assert all(h.current == "r0" for h in fleet.hosts.values())
    assert no_lock_left(fleet)
    assert {e["result"] for h in fleet.hosts.values() for e in h.audit} == {"failed: migration"}


def test_a_failed_install_on_one_host_stops_before_migrating(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.fail_command(lambda host, what: host == "web3" and what.endswith("finish release r1"))
    assert not run_deploy(ctx, fleet)
    assert migrations(fleet) == [] and restarts(fleet) == []
    assert no_lock_left(fleet)


def test_ctrl_c_during_a_batch_stops_the_roll_and_releases_the_lock(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.interrupt(lambda host, request: request["op"] == "activate" and host == "web2")
    with pytest.raises(KeyboardInterrupt):
        run_deploy(ctx, fleet)
    # The worker host's activation, begun after web1's batch, was waited for; it is not undone.
    assert tiers(fleet) == ([("web1", "r1")], [("jobs1", "r1")])
    assert [fleet.hosts[n].current for n in ["web2", "web3", "jobs1"]] == ["r0", "r0", "r1"]
    assert no_lock_left(fleet)
    assert not any(ctx.layout.drain_flag in h.files for h in fleet.hosts.values())


def test_ctrl_c_during_the_migration_waits_for_it_to_end_then_restarts_nothing(fleet_of, release, capsys):
    import os
    import signal

    ctx, fleet = fleet_of()
    run, ended = fleet.run, []

    def migration_meeting_ctrl_c(target, command, **options):
        if (command.description or "").startswith("alembic upgrade head"):
            os.kill(os.getpid(), signal.SIGINT)     # the operator's Ctrl-C, while the host migrates
            time.sleep(0.3)
            ended.append(time.monotonic())
        return run(target, command, **options)
    fleet.run = migration_meeting_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        run_deploy(ctx, fleet)
    assert ended and migrations(fleet) == ["web1"]      # waited for, to its end
    assert restarts(fleet) == [] and no_lock_left(fleet)
    assert "waiting for the migration under way on web1 to end" in capsys.readouterr().err


def test_a_deploy_is_refused_while_another_holds_the_lock_and_changes_nothing(fleet_of, release):
    ctx, fleet = fleet_of()
    fleet.hosts["jobs1"].lock = {"token": "other", "user": "ana", "machine": "elsewhere", "pid": 1,
                                 "since": 0, "command": "deploy prod"}
    with pytest.raises(Exception, match="another deploy holds the lock: ana@elsewhere"):
        run_deploy(ctx, fleet)
    assert fleet.happened("rsync") == [] and restarts(fleet) == []
    assert fleet.hosts["jobs1"].lock["token"] == "other"          # the other holder's lock stays
    assert all(h.lock is None for n, h in fleet.hosts.items() if n != "jobs1")


def test_a_rollback_switches_back_without_migrating(fleet_of, release):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    chosen = [h for h in ctx.env.hosts if {"web", "worker", "beat"} & set(h.roles)]
    assert _rollback(ctx, fleet, ctx.layout, chosen, None, False, 0.0)
    seen = restarts(fleet)
    assert ([r for r in seen if r[0] != "jobs1"], [r for r in seen if r[0] == "jobs1"]) == rolled("r0")
    # Back to the release live just before, which served already: the workers go with the first web batch.
    steps = [t["step"] for t in ctx.reporter.data["timeline"]]
    assert steps.index("rollback: workers: batch 1/1: jobs1") < steps.index("rollback: web: batch 1/3: web1"), steps
    assert migrations(fleet) == []
    assert not [e for e in fleet.happened("command") if "alembic upgrade" in e[2]]
    assert no_lock_left(fleet)


def test_a_rollback_to_a_named_release_keeps_the_workers_behind_the_first_web_batch(fleet_of, release):
    ctx, fleet = fleet_of(after_first_web_batch=True)
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    chosen = [h for h in ctx.env.hosts if {"web", "worker", "beat"} & set(h.roles)]
    assert _rollback(ctx, fleet, ctx.layout, chosen, "r0", False, 0.0)
    assert tiers(fleet, after_first_web_batch=True) == rolled("r0")
    steps = [t["step"] for t in ctx.reporter.data["timeline"]]
    assert steps.index("rollback: web: batch 1/3: web1") < steps.index("rollback: workers: batch 1/1: jobs1"), steps


def test_a_rollback_does_not_wait_for_its_schema_answer_yet_says_it(fleet_of, release, capsys):
    import threading

    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    locked, plain_run = threading.Event(), fleet.run
    lock_op = fleet._op_lock

    def lock(host, request):
        locked.set()
        return lock_op(host, request)

    def run(target, command, **options):
        if (command.description or "").startswith("alembic current"):
            # The answer comes only once the rollback took the lock: it never waited for it.
            assert locked.wait(10), "the rollback waited for its schema answer before taking the lock"
        return plain_run(target, command, **options)

    fleet._op_lock, fleet.run = lock, run
    fleet.fail_command(lambda host, described: described.startswith("alembic current"))
    capsys.readouterr()
    chosen = [h for h in ctx.env.hosts if {"web", "worker", "beat"} & set(h.roles)]
    assert _rollback(ctx, fleet, ctx.layout, chosen, None, False, 0.0)
    said = capsys.readouterr().err
    # A probe that fails is said, and stops nothing.
    assert "schema: could not compare schemas: failed on purpose" in said, said
    assert ("jobs1", "r0") in restarts(fleet)


def test_a_roll_of_two_hosts_per_batch_halts_after_the_failing_batch(fleet_of, release):
    ctx, fleet = fleet_of(batch_size=2, lb=False)
    fleet.hosts["web1"].unhealthy.add("r1")
    assert not run_deploy(ctx, fleet)
    # web1 and web2 were one batch: web2 went live and stays, web1 kept r0 serving, web3 was never reached;
    # the worker host started r1 with that batch and went back to r0.
    assert sorted(restarts(fleet)) == [("jobs1", "r0"), ("jobs1", "r1"), ("web1", "r1"), ("web2", "r1")]
    assert fleet.hosts["jobs1"].background == "r0"
    assert [fleet.hosts[n].current for n in WEB] == ["r0", "r1", "r0"]
    assert no_lock_left(fleet)


@pytest.fixture
def rebuilt(release, tmp_path, monkeypatch):
    """``rebuilt(**changes)``: the next deploy's build, r2, r1 again but for ``changes``."""
    def build(**changes) -> Release:
        options = {"main": (release.path / "main.py").read_text(), "deps_id": release.deps_id, **changes}
        again = make_release(tmp_path, "r2", **options)
        deploys(again, monkeypatch)
        return again
    return build


APP_HOSTS = [*WEB, "jobs1"]


def test_deploying_the_live_content_again_restarts_nothing_and_records_a_noop(fleet_of, release, rebuilt):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    again = rebuilt()
    assert again.id != release.id and again.content == release.content      # the same commit, built later
    assert run_deploy(ctx, fleet)
    assert restarts(fleet) == [] and fleet.happened("rsync") == [] and fleet.happened("command") == []
    assert [e for e in fleet.happened("file")] == []            # env files left alone
    assert all(fleet.hosts[n].current == "r1" and "r2" not in fleet.hosts[n].releases for n in APP_HOSTS)
    assert ctx.reporter.data["noop"] is True
    for name in APP_HOSTS:
        last = fleet.hosts[name].audit[-1]
        assert (last["result"], last["release"], last["built"], last["noop"]) == \
            ("no-op: already live", "r1", "r2", True)
    assert all(not h.audit for n, h in fleet.hosts.items() if n not in APP_HOSTS)
    assert fleet.happened("lock") == [] and all(h.lock is None for h in fleet.hosts.values())


def changed_file(ctx, fleet, rebuilt):
    rebuilt(main="app = 'changed'\n")


def changed_deps(ctx, fleet, rebuilt):
    rebuilt(deps_id="fedcba9876543210")


def changed_env_file(ctx, fleet, rebuilt):
    rebuilt()
    fleet.hosts["jobs1"].files[ctx.layout.env_file] += b"SM_EDITED_BY_HAND=1\n"


def another_release_on_one_host(ctx, fleet, rebuilt):
    rebuilt()
    fleet.hosts["web2"].current = "r0"


def a_host_without_digest(ctx, fleet, rebuilt):
    rebuilt()
    del fleet.hosts["web3"].contents["r1"]       # r1 went live there before digests were recorded


def a_dirty_build(ctx, fleet, rebuilt):
    rebuilt(dirty=True)


def workers_on_another_release(ctx, fleet, rebuilt):
    rebuilt()
    fleet.hosts["jobs1"].background = "r0"      # a halted deploy could not put them back


@pytest.mark.parametrize("change", [changed_file, changed_deps, changed_env_file, another_release_on_one_host,
                                    a_host_without_digest, a_dirty_build, workers_on_another_release])
def test_a_deploy_that_changes_anything_on_one_host_deploys_every_host(fleet_of, release, rebuilt, change):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    change(ctx, fleet, rebuilt)
    assert run_deploy(ctx, fleet)
    assert tiers(fleet) == rolled("r2")
    assert ctx.reporter.data["noop"] is False
    assert {h.audit[-1]["result"] for n, h in fleet.hosts.items() if n in APP_HOSTS} == {"ok"}


def test_a_dirty_build_deploys_even_over_the_same_dirty_build(fleet_of, release, rebuilt, tmp_path, monkeypatch):
    ctx, fleet = fleet_of()
    (tmp_path / "dirty").mkdir()
    dirty = make_release(tmp_path / "dirty", "r1", dirty=True)
    deploys(dirty, monkeypatch)
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    assert rebuilt(dirty=True).content == dirty.content
    assert run_deploy(ctx, fleet)
    assert tiers(fleet) == rolled("r2")


def test_force_deploys_the_live_content_again(fleet_of, release, rebuilt):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    rebuilt()
    assert run_deploy(ctx, fleet, force=True)
    assert tiers(fleet) == rolled("r2")


def ending_exchanges(fleet, monkeypatch, fail_unlock_on: str | None = None) -> list[tuple[str, list[str]]]:
    """The ops each host was asked together (as a command's last exchange); ``fail_unlock_on``: that host's
    agent answers the unlock among them with a failure, as one that could not remove the lock would."""
    asked = []
    real = fleet._op_together

    def together(host, request):
        ops = [r["op"] for r in request["requests"]]
        asked.append((host.name, ops))
        if host.name != fail_unlock_on:
            return real(host, request)
        answers = real(host, {"requests": [r for r in request["requests"] if r["op"] != "unlock"]})["answers"]
        return {"answers": answers + [{"failed": "OSError: read-only file system"}]}
    monkeypatch.setattr(fleet, "_op_together", together)
    return asked


def test_a_deploy_ends_with_one_exchange_per_host_its_audit_line_prune_and_unlock(fleet_of, release, monkeypatch):
    ctx, fleet = fleet_of()
    asked = ending_exchanges(fleet, monkeypatch)
    assert run_deploy(ctx, fleet)
    assert sorted(asked) == sorted([(name, ["audit", "prune", "unlock"]) for name in APP_HOSTS] +
                                   [(h.name, ["unlock"]) for h in ctx.env.hosts if h.name not in APP_HOSTS])
    assert no_lock_left(fleet)


def test_a_lock_its_last_exchange_could_not_give_back_is_asked_again_at_the_end(fleet_of, release, monkeypatch):
    ctx, fleet = fleet_of()
    ending_exchanges(fleet, monkeypatch, fail_unlock_on="web1")
    assert run_deploy(ctx, fleet)
    assert no_lock_left(fleet)
    unlocked = [host for _, host in fleet.happened("unlock")]
    assert unlocked[-1] == "web1" and unlocked.count("web1") == 1


def test_the_live_commit_again_is_compared_before_the_checks_and_the_lock(fleet_of, release, rebuilt):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    before = dict(fleet.round_trips)
    rebuilt()
    assert run_deploy(ctx, fleet)
    assert ctx.reporter.data["noop"] is True
    trips = {name: n - before.get(name, 0) for name, n in fleet.round_trips.items()}
    # Neither the lock nor the checks' verdicts: a survey, the checklist's facts asked beside it (dropped),
    # the env files' facts, then only the audit line changes.
    assert [e[0] for e in fleet.events] == ["audit"] * len(APP_HOSTS), fleet.events
    assert trips == {h.name: 4 if h.name in APP_HOSTS else 2 for h in ctx.env.hosts}, trips


def test_another_commit_with_the_live_content_is_a_noop_found_under_the_lock(fleet_of, release, rebuilt):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    rebuilt(git_sha="1" * 40)       # e.g. a commit that changed only files outside the app's root
    assert run_deploy(ctx, fleet)
    assert ctx.reporter.data["noop"] is True and restarts(fleet) == []
    assert len(fleet.happened("lock")) == len(fleet.hosts) and no_lock_left(fleet)


def test_a_release_that_went_live_after_the_preflight_is_seen_under_the_lock(fleet_of, release, rebuilt):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    rebuilt(git_sha="1" * 40)       # not the live commit: compared under the lock

    def another_deploy_ends_before_the_lock(host, request):
        if request["op"] == "lock" and host == "web2":
            fleet.hosts["web2"].current = "r0"
        return False
    fleet.interrupt(another_deploy_ends_before_the_lock)
    assert run_deploy(ctx, fleet)
    assert tiers(fleet) == rolled("r2")


def test_with_limit_only_the_selected_hosts_are_compared(fleet_of, release, rebuilt):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    fleet.events.clear()
    rebuilt()
    fleet.hosts["web2"].current = "r0"              # outside the limit
    assert run_deploy(ctx, fleet, only=["web1", "jobs1"])
    assert restarts(fleet) == [] and ctx.reporter.data["noop"] is True
    assert run_deploy(ctx, fleet, only=["web1", "web2"])
    assert restarts(fleet) == [("web1", "r2"), ("web2", "r2")]


def rotate(ctx, fleet, monkeypatch) -> bool:
    monkeypatch.setattr(rotate_command, "open_fleet", lambda ctx, hosts=None: fleet)
    return rotate_command.rotate_secret(ctx)


def key_on(fleet, host: str) -> set[str]:
    """The key values a host's env file and running units hold."""
    h = fleet.hosts[host]
    return {h.env_file["SM_SECRET_KEY"], *(env["SM_SECRET_KEY"] for env in h.units.values())}


def test_rotate_secret_writes_every_env_file_before_restarting_and_every_unit_ends_on_the_new_key(
        fleet_of, monkeypatch, tmp_path):
    ctx, fleet = fleet_of()
    assert rotate(ctx, fleet, monkeypatch)
    new = (tmp_path / "prod.env").read_text().split("SM_SECRET_KEY=")[1].split()[0]
    assert new != OLD_KEY
    assert all(key_on(fleet, h) == {new} for h in [*WEB, "jobs1"])
    last_write = max(i for i, e in enumerate(fleet.events) if e[0] == "setenv")
    assert last_write < min(i for i, e in enumerate(fleet.events) if e[0] == "activate")
    assert tiers(fleet) == rolled("r0")     # the same release
    assert no_lock_left(fleet) and migrations(fleet) == []


def test_rotate_secret_that_fails_on_one_host_reports_the_split_and_releases_the_lock(fleet_of, monkeypatch):
    ctx, fleet = fleet_of()
    fleet.hosts["web2"].unhealthy.add("r0")      # r0 fails its health gate on web2 once restarted
    assert not rotate(ctx, fleet, monkeypatch)
    assert tiers(fleet)[0] == [("web1", "r0"), ("web2", "r0")]    # the roll halted at web2's batch
    assert OLD_KEY in key_on(fleet, "web3")
    assert ctx.reporter.data["generations"]["web1"]["current"] is True
    assert ctx.reporter.data["generations"]["web3"]["current"] is False
    assert no_lock_left(fleet)


def test_the_fake_refuses_an_agent_op_it_does_not_model(fleet_of):
    from smship.remote import call_agent

    ctx, fleet = fleet_of()
    with pytest.raises(AssertionError, match="does not model the agent op 'hostos'"):
        call_agent(fleet, fleet.targets["web1"], {"op": "hostos"})
    assert json.loads(json.dumps(fleet.hosts["web1"].activations)) == [["r0", None]]


def test_a_workers_activation_waits_as_long_as_its_warm_shutdown_may_take(fleet_of):
    from smship.steps.roll import Activations
    from smship.steps.tiers import background_activations

    ctx, _ = fleet_of()
    jobs = [h for h in ctx.env.hosts if h.name == "jobs1"]
    # The worker's stop waits for its running tasks (worker.stop_timeout), then it starts and is watched.
    background = background_activations(ctx, jobs, {"jobs1": "r1"})("jobs1")
    assert background.timeout >= ctx.env.worker.stop_timeout + ctx.env.health.timeout * 2
    # A web slot is stopped without waiting: its activation's bound is the gate's.
    web = Activations(ctx, {"web1": "r1"}, lambda name: [ctx.layout.web_service], None)("web1")
    assert web.timeout < ctx.env.worker.stop_timeout


def test_a_workers_batch_still_stopping_after_the_web_roll_says_whom_it_waits_for(fleet_of, release, capsys,
                                                                                   monkeypatch):
    from smship.steps.alongside import Alongside

    ctx, fleet = fleet_of()
    monkeypatch.setattr(Alongside, "NOTICE_EVERY", 0.2)
    activate = fleet._op_activate

    def slow_for_workers(host, request):
        if request.get("background"):
            time.sleep(0.7)          # a warm shutdown waiting for a running task
        return activate(host, request)

    monkeypatch.setattr(fleet, "_op_activate", slow_for_workers)
    assert run_deploy(ctx, fleet)
    said = capsys.readouterr().err
    notices = [line.strip() for line in said.splitlines() if "still waiting" in line]
    assert notices and all(line.startswith("deploy: workers: still waiting for jobs1 after ") for line in notices), said
    assert "worker.stop_timeout: 600s" in notices[0]
    assert len(notices) <= 4, notices


def test_a_workers_batch_that_ends_with_the_web_roll_says_nothing_more(fleet_of, release, capsys):
    ctx, fleet = fleet_of()
    assert run_deploy(ctx, fleet)
    assert "still waiting" not in capsys.readouterr().err


@pytest.mark.parametrize("worker_kill_mode", ["control-group", "mixed"])
def test_a_worker_unit_that_would_kill_its_tasks_is_named_in_the_preflight_and_the_deploy_goes_on(
        fleet_of, release, capsys, worker_kill_mode):
    ctx, fleet = fleet_of()
    fleet.hosts["jobs1"].kill_modes = {"shop-worker@a.service": worker_kill_mode, "shop-beat.service": "control-group"}
    assert run_deploy(ctx, fleet)
    said = capsys.readouterr().err
    if worker_kill_mode == "mixed":     # the unit this smship writes: nothing to say (beat runs one process)
        assert "KillMode" not in said, said
        return
    assert ("jobs1: shop-worker@.service (KillMode=control-group, an older smship's unit file) kills the tasks it "
            "runs when it restarts; 'smship provision prod' gives it KillMode=mixed") in said, said
    assert said.count("KillMode=") == 2, said


def test_a_web_batch_still_at_work_names_its_hosts_while_the_deploy_waits(fleet_of, release, capsys, monkeypatch):
    import smship.ssh.fleet

    ctx, fleet = fleet_of()
    monkeypatch.setattr(smship.ssh.fleet, "WAIT_NOTICE_EVERY", 0.2)
    activate = fleet._op_activate

    def slow_gate_on_web2(host, request):
        if host.name == "web2" and request.get("web"):
            time.sleep(0.5)          # a new uvicorn still importing the app
        return activate(host, request)

    monkeypatch.setattr(fleet, "_op_activate", slow_gate_on_web2)
    assert run_deploy(ctx, fleet)
    notices = [line.strip() for line in capsys.readouterr().err.splitlines() if "still waiting" in line]
    assert notices and all(line.startswith("deploy: web: batch 2/3: still waiting for web2 after ") for line in notices), \
        notices


def test_the_survey_asks_each_host_through_the_agent_begun_there_while_the_deploy_loaded(fleet_of, release):
    from smship.remote import AgentsAhead

    ctx, fleet = fleet_of()
    ahead = AgentsAhead(fleet, list(fleet.targets.values()))
    chosen = [h for h in ctx.env.hosts if {"web", "worker", "beat"} & set(h.roles)]
    assert deploy_command.deploy(ctx, fleet, chosen, ahead=ahead, skip_checks=ALL_CHECKS)
    ahead.cancel()
    assert fleet.happened("cancel begun") == []          # every host's was taken
    for name in fleet.hosts:
        kinds = [e[0] for e in fleet.events if len(e) > 1 and e[1] == name]
        assert "finish begun" in kinds and kinds.index("finish begun") < kinds.index("lock"), (name, kinds)


def test_status_asks_each_host_through_the_agent_begun_there_while_its_code_loaded(fleet_of):
    from smship.remote import AgentsAhead
    from smship.status.status import status

    ctx, fleet = fleet_of()
    ahead = AgentsAhead(fleet, list(fleet.targets.values()))
    assert status(ctx, fleet, ahead)
    ahead.cancel()
    assert fleet.happened("cancel begun") == []          # every host's was taken
    assert sorted(e[1] for e in fleet.happened("finish begun")) == sorted(fleet.hosts)
    assert sorted(ctx.reporter.data["hosts_status"]) == sorted(fleet.hosts)
    assert all(fleet.round_trips[name] == 1 for name in fleet.hosts)
