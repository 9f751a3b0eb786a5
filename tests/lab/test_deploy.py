"""`smship deploy` and `smship rollback` on real hosts, with a client counting failed requests.

The lab: lab1 = [db, lb, beat], lab2 and lab3 = [web, worker], web batches of one.
Steady clients run through each roll: a GET and a POST client through the
load balancer (lab1), and a GET and a POST client straight at lab2's own nginx
(as on a single web host, with no lb to drain it).  All must see zero failed requests,
and the lb's nginx is never reloaded (a reload closes idle kept-alive client
connections, and a request sent on one at that instant fails).

Network rule: only lab addresses on the test bridge are contacted.
"""

from __future__ import annotations

import json
import shlex
import time
import uuid
from contextlib import ExitStack

import pytest
import yaml

from labkit import (APP_HOSTS, APP_ROOT, DRAIN_FLAG, ENV, WEB, SteadyClient, assert_no_failed_request, drained,
                    background_release, finish_smship, fleet_state, git, live_release, main_pids, nginx_workers, psql, remote,
                    run_smship, served_release, start_smship, steady_clients, wait_for_line, wait_state, web_pid,
                    web_unit, worker_unit)

pytestmark = pytest.mark.lab

def test_first_deploy_migrates_once_and_starts_every_tier(lab, deployed):
    release = deployed.document["audit"]["release"]
    assert deployed.stderr.count("migrating the database once") == 1
    for host in APP_HOSTS:
        assert live_release(lab, host) == release
        assert remote(lab, host, f"test -f /srv/refapp/releases/{release}/.smship-complete && echo yes").strip() == "yes"
    for host in WEB:
        assert served_release(lab, host) == release
    assert remote(lab, "lab1", "systemctl is-active refapp-beat.service").strip() == "active"
    heads = remote(lab, "lab1", "runuser -u postgres -- psql -tAc 'SELECT version_num FROM alembic_version' refapp")
    assert heads.strip() == "0002_uploads_beat_ticks"


def test_deploy_rolls_a_new_release_with_no_failed_request(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 1\n"})
    # A setting changed in the inventory since the last provision: the deploy brings it to the hosts.
    data = yaml.safe_load(inventory.read_text())
    data["environments"][ENV].setdefault("env", {})["SM_DEPLOY_NOTE"] = "rolled-by-deploy"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    before = {h: live_release(lab, h) for h in APP_HOSTS}
    web_before = {h: web_unit(lab, h) for h in WEB}
    worker_before = {h: worker_unit(lab, h) for h in WEB}
    lb_workers = nginx_workers(lab, "lab1")
    with ExitStack() as stack:
        clients = steady_clients(lab, stack)
        time.sleep(1)
        run = smship("deploy", ENV, "-o", "json", inventory=inventory, check=True)
    assert_no_failed_request(clients)
    assert nginx_workers(lab, "lab1") == lb_workers, "the lb's nginx was reloaded during the deploy"
    assert "not drained from the load balancer" not in run.output and "still drained" not in run.output
    assert not any(drained(lab, h) for h in WEB)
    release = run.document["audit"]["release"]
    assert release not in before.values()
    for host in WEB:
        assert served_release(lab, host) == release
    # Both clients saw the old release, then the new one: the roll happened under load.
    assert {before["lab2"], release} <= clients[1].releases, clients[1].releases
    # Straight at lab2's nginx, as on a fleet of one web host: the old uvicorn answered every request
    # until the new one took over, once, with none failed or lost between (no timing bound).
    served = clients[1].served
    switch = served.index(release)
    assert served[:switch] == [before["lab2"]] * switch and served[switch:] == [release] * (len(served) - switch)
    assert web_before["lab2"] != web_unit(lab, "lab2"), "lab2 did not start the release in its idle web slot"
    # The old slot finishes what it holds on its own time, then is stopped for good.
    wait_state(lab, "lab2", web_before["lab2"], "inactive")
    # The slots' boot links changed, and systemd reloaded them: no unit is left "changed on disk".
    for host in WEB:
        assert remote(lab, host, f"systemctl show -p NeedDaemonReload --value {web_unit(lab, host)} "
                                 f"{worker_unit(lab, host)} nginx").split() == ["no"] * 3, host
    assert run.stderr.count("migrating the database once") == 1
    for host in APP_HOSTS:
        assert "SM_DEPLOY_NOTE=rolled-by-deploy" in remote(lab, host, "cat /srv/refapp/shared/env")
        for unit, pid in main_pids(lab, host).items():
            environ = remote(lab, host, f"tr '\\0' '\\n' < /proc/{pid}/environ")
            assert "SM_DEPLOY_NOTE=rolled-by-deploy" in environ.splitlines(), (host, unit)
        # Back to what the lab's own inventory renders, for the tests after this one (the processes
        # keep the value until their next restart, which is harmless).
        remote(lab, host, "sed -i '/^SM_DEPLOY_NOTE=/d' /srv/refapp/shared/env")
    # The worker and beat took the release alongside the web tier, from the first web batch on: the
    # beat from their own link, the worker from the slot it started in beside the old one, which no
    # longer runs.
    for host in APP_HOSTS:
        assert remote(lab, host, "basename \"$(readlink /srv/refapp/background)\"").strip() == release, host
        unit = worker_unit(lab, host) if host in WEB else "refapp-beat"
        workdir = f"/srv/refapp/worker/slot-{unit[-9]}" if host in WEB else "/srv/refapp/background"
        assert remote(lab, host, f"systemctl show -p WorkingDirectory --value {unit}").strip() == workdir, host
        if host in WEB:
            assert unit != worker_before[host], f"{host} did not start the release in its idle worker slot"
            assert remote(lab, host, f"basename \"$(readlink {workdir})\"").strip() == release, host
            wait_state(lab, host, worker_before[host], "inactive")
    steps = [t["step"] for t in run.document["timeline"]]
    assert steps.index("deploy: workers: batch 1/1: lab1, lab2, lab3") < steps.index("deploy: web: batch 1/2: lab2") \
        < steps.index("deploy: web: batch 2/2: lab3"), steps
    # An audit line on every host, naming the release and the result.
    for host in APP_HOSTS:
        last = json.loads(remote(lab, host, "tail -n1 /srv/refapp/deploys.jsonl"))
        assert (last["release"], last["result"]) == (release, "ok"), last
        assert {"who", "when", "hosts", "seconds"} <= set(last)
    # A small change ships small: the release tree is hard-linked from the previous one.
    shipped = {r["host"]: r["details"].get("bytes_sent", 0) for r in run.document["hosts"]
               if "bytes_sent" in r["details"]}
    assert shipped and all(size < 2_000_000 for size in shipped.values()), shipped


def test_rollback_switches_back_without_migrating_and_with_no_failed_request(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 2\n"})
    current = live_release(lab, "lab2")
    releases = sorted(remote(lab, "lab2", "ls /srv/refapp/releases").split())
    if releases.index(current) == 0:
        # Run without the test before it (which deploys a second release): make one to go back from.
        smship("deploy", ENV, inventory=inventory, check=True)
        current = live_release(lab, "lab2")
        releases = sorted(remote(lab, "lab2", "ls /srv/refapp/releases").split())
    previous = releases[releases.index(current) - 1]

    report = smship("rollback", ENV, "--check", inventory=inventory, check=True)
    assert previous in report.output and "0002_uploads_beat_ticks" in report.output, report
    assert live_release(lab, "lab2") == current

    lb_workers = nginx_workers(lab, "lab1")
    with ExitStack() as stack:
        clients = steady_clients(lab, stack)
        time.sleep(1)
        run = smship("rollback", ENV, inventory=inventory, check=True)
    assert_no_failed_request(clients)
    assert nginx_workers(lab, "lab1") == lb_workers, "the lb's nginx was reloaded during the rollback"
    assert "alembic" not in run.output.replace("alembic history", "")
    for host in APP_HOSTS:
        assert live_release(lab, host) == previous
    for host in WEB:
        assert served_release(lab, host) == previous


def test_deploying_the_live_commit_again_restarts_nothing_and_force_rolls_it_anyway(lab, smship, deployed, tmp_path):
    # The session's own app: live after the rollback above (or the first deploy); deployed here if not.
    smship("deploy", ENV, check=True)
    before = fleet_state(lab)
    shipped = {h: remote(lab, h, f"ls {APP_ROOT}/releases") for h in APP_HOSTS}
    live = before["lab2"][0]
    began = time.monotonic()
    again = smship("deploy", ENV, "-o", "json", check=True)
    print(f"no-op deploy: {time.monotonic() - began:.1f}s, phases {again.document.get('phases')}")
    assert again.document["noop"] is True, again
    assert f"already live: release {live}" in again.output, again
    assert fleet_state(lab) == before, "an unchanged deploy restarted or switched something"
    assert {h: remote(lab, h, f"ls {APP_ROOT}/releases") for h in APP_HOSTS} == shipped, "it shipped a release"
    for host in APP_HOSTS:
        last = json.loads(remote(lab, host, f"tail -n1 {APP_ROOT}/deploys.jsonl"))
        assert (last["result"], last["release"], last["noop"]) == ("no-op: already live", live, True), last
        assert remote(lab, host, f"test -e {APP_ROOT}/shared/deploy.lock && echo held || echo free").strip() == "free"

    # The same commit built once as an archive (as CI does) and deployed with --release: a no-op as
    # well, and deployed again it is not unpacked again (the build cache keeps it, named by content).
    archive = tmp_path / "release.tar.zst"
    smship("build", "--env", ENV, "--output", str(archive), check=True)
    unpacked = []
    for _ in range(2):
        prebuilt = smship("deploy", ENV, "--release", str(archive), "-o", "json", check=True)
        assert prebuilt.document["noop"] is True and f"already live: release {live}" in prebuilt.output, prebuilt
        unpacked.append(prebuilt.document["release"]["path"])
    assert unpacked[0] == unpacked[1] and "/unpacked/" in unpacked[0], unpacked
    assert fleet_state(lab) == before, "an unchanged prebuilt release restarted or switched something"

    forced = smship("deploy", ENV, "-o", "json", "--force", check=True)
    assert forced.document["noop"] is False
    release = forced.document["audit"]["release"]
    assert release != live
    for host in APP_HOSTS:
        assert live_release(lab, host) == release
        # Every unit runs a new process; a web host's serves from its other slot.
        restarted = main_pids(lab, host)
        assert not set(restarted.values()) & set(before[host][1].values()), (host, before[host], restarted)


# Where the reference app's held task (refapp.hold) keeps its files: its file storage (SM_FILE_STORAGE_PATH).
HELD_DIR = f"{APP_ROOT}/shared/uploads"


def enqueue_held_task(lab, name: str) -> str:
    """Send refapp.hold (in flight until HELD_DIR/<name>.go appears) as the app itself would; its task id."""
    code = ("from refapp.celery_app import HOLD_TASK, make_celery; from refapp.settings import Settings; "
            f"print(make_celery(Settings.from_env()).send_task(HOLD_TASK, args=[{name!r}, 180]).id)")
    sent = remote(lab, "lab2", f"systemd-run --quiet --wait --pipe --collect -p User=refapp "
                               f"-p EnvironmentFile={APP_ROOT}/shared/env -p WorkingDirectory={APP_ROOT}/current "
                               f"{APP_ROOT}/current/.venv/bin/python -c {shlex.quote(code)}")
    return sent.split()[-1]


def task_answer(lab, task_id: str) -> dict:
    """What the app's /tasks/<id> says of a task (its state, and its result once it succeeded)."""
    return json.loads(remote(lab, "lab2", f"curl -sk -H 'Host: refapp.lab.test' https://127.0.0.1/tasks/{task_id}"))


def test_a_task_running_when_a_deploy_restarts_its_worker_finishes_while_the_new_worker_already_serves(
        lab, deployed):
    name = f"held-{uuid.uuid4().hex[:12]}"
    running, go = f"{HELD_DIR}/{name}.running", f"{HELD_DIR}/{name}.go"
    task_id = enqueue_held_task(lab, name)
    released = False
    try:
        deadline = time.monotonic() + 60
        while not (host := next((h for h in WEB if remote(lab, h, f"cat {running} 2>/dev/null || true").strip()), None)):
            assert time.monotonic() < deadline, f"no worker ran the held task: {task_answer(lab, task_id)}"
            time.sleep(0.3)
        old_unit = worker_unit(lab, host)
        old_worker = main_pids(lab, host)[old_unit]
        # The deploy does not wait for the task: the new worker starts in the other slot, and the old
        # one, asked to stop, finishes the task on its own time.
        run_smship("deploy", ENV, "--force", inventory=lab.inventory, check=True, timeout=240)
        new_unit = worker_unit(lab, host)
        assert new_unit != old_unit
        assert remote(lab, host, f"systemctl is-active {new_unit} || true").strip() == "active"
        # SIGTERM reached the old worker's main process alone: the pool process running the task lives on.
        assert remote(lab, host, f"systemctl is-active {old_unit} || true").strip() == "deactivating", \
            f"{host}'s old worker stopped without waiting for the task it ran"
        assert remote(lab, host, f"systemctl show -p MainPID --value {old_unit}").strip() == old_worker
        assert task_answer(lab, task_id)["state"] == "PENDING", task_answer(lab, task_id)
        # status names the old slot while it finishes the task.
        shown = run_smship("status", ENV, "-o", "json", inventory=lab.inventory, check=True)
        units = shown.document["hosts_status"][host]["units"]
        assert units[old_unit]["state"] == "deactivating" and units[old_unit]["idle"] is True, units
        assert units[new_unit]["state"] == "active" and not units[new_unit].get("idle"), units
        remote(lab, host, f"touch {go}")
        released = True
        wait_state(lab, host, old_unit, "inactive", seconds=60)
        answer = task_answer(lab, task_id)
        assert (answer["state"], answer["result"]) == ("SUCCESS", host), answer
        assert remote(lab, host, f"ls {running} {go} 2>/dev/null || true").strip() == ""
        assert remote(lab, host, f"systemctl is-enabled {old_unit} || true").strip() == "disabled"
        assert remote(lab, host, f"systemctl is-enabled {new_unit} || true").strip() == "enabled"
    finally:
        if not released:
            # No worker may hold the task on into the next test's restart (it removes the file it finds).
            for h in WEB:
                remote(lab, h, f"touch {go}")


def test_a_worker_unit_of_an_older_smship_is_refused_until_provision_hands_it_over_to_a_slot(lab, smship, deployed):
    live = live_release(lab, "lab3")
    template, legacy = "/etc/systemd/system/refapp-worker@.service", "/etc/systemd/system/refapp-worker.service"
    # What an smship before worker slots left on lab3: one worker unit, run from the worker and beat's link.
    remote(lab, "lab3", f"systemctl disable --now refapp-worker@a.service refapp-worker@b.service && "
                        f"sed 's|{APP_ROOT}/worker/slot-%i|{APP_ROOT}/background|g' {template} > {legacy} && "
                        f"rm -f {template} && rm -rf {APP_ROOT}/worker && systemctl daemon-reload && "
                        "systemctl enable --now refapp-worker.service")
    wait_state(lab, "lab3", "refapp-worker.service", "active")
    old_worker = remote(lab, "lab3", "systemctl show -p MainPID --value refapp-worker.service").strip()
    before = fleet_state(lab, hosts=("lab1", "lab2"))
    refused = smship("deploy", ENV, "--force", check=False)
    assert refused.returncode != 0, refused
    assert "lab3: refapp-worker.service is the worker unit of an older smship" in refused.output, refused
    assert "preflight failed, nothing was changed" in refused.output, refused
    assert fleet_state(lab, hosts=("lab1", "lab2")) == before, "a refused deploy restarted or switched something"
    assert remote(lab, "lab3", "systemctl show -p MainPID --value refapp-worker.service").strip() == old_worker
    smship("provision", ENV, check=True)
    # A worker slot serves the release the old unit ran; the old unit is gone. (Slot a took over from
    # it; the changed unit file's restart then switched to slot b, a new worker beside it.)
    assert remote(lab, "lab3", f"test -e {legacy} && echo yes || echo no").strip() == "no"
    unit = worker_unit(lab, "lab3")
    slot = unit.split("@")[1][0]
    assert remote(lab, "lab3", f"basename \"$(readlink {APP_ROOT}/worker/slot-{slot})\"").strip() == live
    wait_state(lab, "lab3", unit, "active")
    assert remote(lab, "lab3", f"systemctl is-enabled {unit}").strip() == "enabled"
    # A worker unit whose stop signals all its processes (an older smship's) is named; the deploy goes on.
    remote(lab, "lab2", f"sed -i '/^KillMode=/d' {template} && systemctl daemon-reload")
    warned = smship("deploy", ENV, "--force", check=True)
    assert "lab2: refapp-worker@.service (KillMode=control-group, an older smship's unit file) kills the tasks" \
        in warned.output, warned
    assert "lab3: refapp-worker@.service (KillMode" not in warned.output
    smship("provision", ENV, check=True)
    assert remote(lab, "lab2", "systemctl show -p KillMode --value refapp-worker@a.service").strip() == "mixed"


def test_a_drained_host_gets_none_of_the_lbs_requests_yet_still_serves_direct_ones(lab):
    def access_log_lines(host: str) -> int:
        return int(remote(lab, host, "wc -l < /var/log/nginx/access.log"))

    before = {h: access_log_lines(h) for h in WEB}
    remote(lab, "lab2", f"touch {DRAIN_FLAG}")
    try:
        with ExitStack() as stack:
            gets = stack.enter_context(SteadyClient(lab.address("lab1"), max_requests=40, interval=0.01))
            posts = stack.enter_context(SteadyClient(lab.address("lab1"), path="/session", max_requests=40,
                                                     interval=0.01, post={"name": "drained"}))
            deadline = time.monotonic() + 30
            while min(gets.total, posts.total) < 40 and time.monotonic() < deadline:
                time.sleep(0.1)
        assert gets.failures == [] and posts.failures == [], (gets.summary(), posts.summary())
        assert gets.ok == posts.ok == 40, (gets.summary(), posts.summary())
        # Round robin sent lab2 some of them: it answered each 421 before its app saw it,
        # and the lb sent it on to lab3, which served all 80, POSTs included.
        at_lab2 = remote(lab, "lab2", f"tail -n +{before['lab2'] + 1} /var/log/nginx/access.log").splitlines()
        assert at_lab2 and all('" 421 ' in line for line in at_lab2), at_lab2[:5]
        at_lab3 = remote(lab, "lab3", f"tail -n +{before['lab3'] + 1} /var/log/nginx/access.log").splitlines()
        assert sum('"POST /session' in line and '" 200 ' in line for line in at_lab3) == 40, at_lab3[:5]
        # A request that does not come through the lb is served.
        assert served_release(lab, "lab2") == live_release(lab, "lab2")
    finally:
        remote(lab, "lab2", f"rm -f {DRAIN_FLAG}")


def test_a_host_a_halted_deploy_left_drained_is_shown_not_counted_on_and_put_back(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 5\n"})
    remote(lab, "lab3", f"echo 'drained by smship: deploy: web' > {DRAIN_FLAG}")
    status = smship("status", ENV, "-o", "json", inventory=inventory, check=True).document["hosts_status"]
    assert (status["lab2"]["drained"], status["lab3"]["drained"]) == (False, True), status
    with ExitStack() as stack:
        clients = steady_clients(lab, stack)
        time.sleep(1)
        run = smship("deploy", ENV, inventory=inventory, check=True)
    assert_no_failed_request(clients)
    # Draining lab2 too would have left the lb nothing to send requests to.
    assert "lab2: not drained from the load balancer, no other web host serves it" in run.output, run
    assert not drained(lab, "lab3"), "a deploy that activated lab3 left it drained"

    # Both left drained (the lb has nowhere to send a request): the first batch is
    # restarted without a drain, and each host is put back once it is activated.
    for host in WEB:
        remote(lab, host, f"touch {DRAIN_FLAG}")
    run = smship("deploy", ENV, "--force", inventory=inventory, check=True)     # the same release, rolled again
    assert "lab2: not drained from the load balancer" in run.output, run
    assert not any(drained(lab, h) for h in WEB), "a deploy left an activated host drained"


def test_a_release_failing_sm010_is_halted_after_the_first_batch_and_reverted(lab, smship, variants):
    inventory = variants.inventory(edits={"refapp/web.py": [("        if not state.ok:\n",
                                                             "        if True:  # a broken release\n")]},
                                   message="sm010")
    before = {h: live_release(lab, h) for h in APP_HOSTS}
    untouched, serving = web_pid(lab, "lab3"), web_pid(lab, "lab2")
    with ExitStack() as stack:
        clients = steady_clients(lab, stack)
        time.sleep(1)
        run = smship("deploy", ENV, inventory=inventory, check=False)
    variants.undo()
    assert_no_failed_request(clients)
    assert "lab2" in run.output and "SM010" in run.output, run
    assert before["lab2"] + " kept serving; the new release never took a request" in run.output, run
    assert {h: live_release(lab, h) for h in APP_HOSTS} == before
    assert web_pid(lab, "lab3") == untouched, "a host after the failing batch was restarted"
    assert web_pid(lab, "lab2") == serving, "lab2's serving web slot was restarted"
    assert served_release(lab, "lab2") == before["lab2"]
    # The workers and beat, started beside the failing batch, went back to the release they ran.
    assert {h: background_release(lab, h) for h in APP_HOSTS} == before


def test_an_unhealthy_release_is_reverted(lab, smship, variants):
    inventory = variants.inventory(edits={"refapp/web.py": [
        ('        return {"status": worst, "checks": results}',
         '        return {"status": "unhealthy", "checks": results}')]}, message="unhealthy")
    before = {h: live_release(lab, h) for h in APP_HOSTS}
    run = smship("deploy", ENV, inventory=inventory, check=False)
    variants.undo()
    assert "lab2" in run.output and "'unhealthy'" in run.output, run
    assert {h: live_release(lab, h) for h in APP_HOSTS} == before
    assert served_release(lab, "lab2") == before["lab2"]


FAILING_MIGRATION = '''\
"""A migration that fails half way."""
import sqlalchemy as sa
from alembic import op

revision = "0003_half_done"
down_revision = "0002_uploads_beat_ticks"


def upgrade():
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("SELECT 1 / 0")


def downgrade():
    op.drop_table("half_done")
'''


def test_a_failing_migration_restarts_nothing_and_rollback_without_to_skips_its_release(lab, smship, variants):
    inventory = variants.inventory(files={"host/migrations/versions/0003_half_done.py": FAILING_MIGRATION},
                                   message="bad migration")
    before = {h: (live_release(lab, h), main_pids(lab, h)) for h in APP_HOSTS}
    went_live = {h: release for h, (release, _) in before.items()}
    failed = smship("deploy", ENV, "-o", "json", inventory=inventory, check=False)
    variants.undo()
    assert "alembic upgrade head failed" in failed.output and "division by zero" in failed.output, failed
    assert {h: (live_release(lab, h), main_pids(lab, h)) for h in APP_HOSTS} == before
    version = remote(lab, "lab1", "runuser -u postgres -- psql -tAc 'SELECT version_num FROM alembic_version' refapp")
    assert version.strip() == "0002_uploads_beat_ticks"
    tables = remote(lab, "lab1", "runuser -u postgres -- psql -tAc \"SELECT to_regclass('half_done')\" refapp")
    assert tables.strip() == ""

    never_live = failed.document["audit"]["release"]
    for host in APP_HOSTS:
        # Shipped and complete, yet it never went live: newer than the live release, older than the next.
        assert remote(lab, host, f"test -f /srv/refapp/releases/{never_live}/.smship-complete && echo yes").strip() \
            == "yes"
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 5\n"})
    # Forced: after the tests before this one, MARK = 5 may be live already, and rollback must go back to it.
    smship("deploy", ENV, "--force", inventory=inventory, check=True)

    report = smship("rollback", ENV, "--check", inventory=inventory, check=True)
    assert never_live not in report.output, report
    smship("rollback", ENV, inventory=inventory, check=True)
    assert {h: live_release(lab, h) for h in APP_HOSTS} == went_live
    for host in APP_HOSTS:
        log = remote(lab, host, "cat /srv/refapp/activations.jsonl")
        assert never_live not in log and went_live[host] in log, log
        assert remote(lab, host, "stat -c %U /srv/refapp/activations.jsonl").strip() == "root"


def test_a_second_deploy_is_refused_while_the_first_holds_the_lock(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 3\n"})
    first = start_smship("deploy", ENV, inventory=inventory)
    try:
        wait_for_line(first, "building a release")
        second = smship("deploy", ENV, inventory=inventory, check=False)
    finally:
        first_run = finish_smship(first)
    assert first_run.returncode == 0, first_run
    assert "another deploy holds the lock" in second.output and "deploy lab" in second.output, second
    # Released on the way out, on every host: the next deploy's mkdir takes it.
    for host in APP_HOSTS:      # every host of the lab
        assert remote(lab, host, "test -e /srv/refapp/shared/deploy.lock && echo held || echo free").strip() == "free"


def test_a_host_killed_mid_deploy_halts_it_the_fleet_keeps_serving_and_a_rerun_completes(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 4\n"})
    with ExitStack() as stack:
        through_lb = stack.enter_context(SteadyClient(lab.address("lab1")))
        deploy = start_smship("deploy", ENV, inventory=inventory)
        try:
            wait_for_line(deploy, "web: batch 2/2: lab3")
            lab.kill("lab3")
        finally:
            run = finish_smship(deploy)
        time.sleep(2)
    assert run.returncode != 0, run
    assert "lab3" in run.stderr.split("deploy halted")[-1], run
    assert through_lb.failures == [], through_lb.summary()
    assert through_lb.total >= 50, through_lb.summary()

    lab.start("lab3")
    rerun = smship("deploy", ENV, "-o", "json", inventory=inventory, check=True)
    release = rerun.document["audit"]["release"]
    for host in WEB:
        assert served_release(lab, host) == release


EXPAND_MIGRATION = '''\
"""Expand: a new table the old code does not know about."""
import sqlalchemy as sa
from alembic import op

revision = "0003_expand_notes"
down_revision = "0002_uploads_beat_ticks"


def upgrade():
    op.create_table("expand_notes", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("expand_notes")
'''


def test_rollback_past_an_expand_migration_keeps_the_schema_and_says_so(lab, smship, variants):
    inventory = variants.inventory(files={"host/migrations/versions/0003_expand_notes.py": EXPAND_MIGRATION},
                                   message="expand")
    try:
        smship("deploy", ENV, inventory=inventory, check=True)
        assert psql(lab, "SELECT version_num FROM alembic_version") == "0003_expand_notes"

        check = smship("rollback", ENV, "--check", inventory=inventory, check=True)
        assert "does NOT know the database's current revision" in check.output, check

        with ExitStack() as stack:
            clients = steady_clients(lab, stack)
            time.sleep(1)
            smship("rollback", ENV, inventory=inventory, check=True)
        assert_no_failed_request(clients)
        # Code only: the newer schema stays, and the older code runs on it.
        assert psql(lab, "SELECT version_num FROM alembic_version") == "0003_expand_notes"
        assert psql(lab, "SELECT to_regclass('expand_notes')") == "expand_notes"
        for host in WEB:
            answer = json.loads(remote(lab, host, "curl -sk -H 'Host: refapp.lab.test' https://127.0.0.1/health"))
            assert answer["migration"]["ahead"] is True, answer
    finally:
        # Leave the shared lab's database where the reference app's own head is.
        psql(lab, "DROP TABLE IF EXISTS expand_notes; UPDATE alembic_version SET version_num = '0002_uploads_beat_ticks'")
        variants.undo()


def test_nginx_serves_hashed_assets_immutable_and_marks_the_session_cookie_secure(lab, deployed):
    for host in WEB:
        asset = remote(lab, host, "ls /var/www/refapp/static/dist/assets | grep -m1 '\\.js$'").strip()
        headers = remote(lab, host, "curl -skI -H 'Host: refapp.lab.test' "
                                    f"https://127.0.0.1/static/dist/assets/{asset}").lower()
        assert headers.startswith("http/2 200"), headers
        assert "cache-control: public, immutable" in headers and "cache-control: max-age=31536000" in headers
        cookie = remote(lab, host, "curl -sk -o /dev/null -D - -H 'Host: refapp.lab.test' -H 'content-type: "
                                   "application/json' -d '{\"name\": \"ada\"}' https://127.0.0.1/session")
        set_cookie = next(line for line in cookie.splitlines() if line.lower().startswith("set-cookie: session="))
        assert "; secure" in set_cookie.lower() and "httponly" in set_cookie.lower(), set_cookie


def test_hosts_reached_as_root_are_deployed_and_rolled_back_without_sudo(lab, smship, variants):
    # A host with no sudo user is reached as root; smship then runs nothing through sudo (which such a
    # host may not have): sudo logs each command it runs, and this window's log must hold none of smship's.
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 6\n"}, message="deployed as root")
    data = yaml.safe_load(inventory.read_text())
    data["environments"][ENV]["ssh"]["user"] = "root"
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    before = live_release(lab, "lab2")
    since = int(time.time()) + 1
    time.sleep(since - time.time())     # --since counts whole seconds: the sudo of the line above is left out
    run = smship("deploy", ENV, "-o", "json", inventory=inventory)
    assert run.returncode == 0, run.output[-3000:]
    status = smship("status", ENV, "-o", "json", inventory=inventory, check=True).document["hosts_status"]
    rollback = smship("rollback", ENV, inventory=inventory)
    assert rollback.returncode == 0, rollback.output[-3000:]
    for host in APP_HOSTS:
        ran = remote(lab, host, f"journalctl -q --no-pager -o cat _COMM=sudo --since @{since} | grep COMMAND= || true")
        assert [line for line in ran.splitlines() if "journalctl" not in line] == [], (host, ran)
    release = run.document["audit"]["release"]
    assert {status[host]["current"] for host in APP_HOSTS} == {release}
    assert all(status[host]["ready"] == "healthy" for host in WEB), status
    for host in APP_HOSTS:
        assert live_release(lab, host) == before
    for host in WEB:
        assert served_release(lab, host) == before


def test_an_app_without_a_front_end_ships(lab, smship, variants):
    inventory = variants.inventory(message="no front end yet")
    git(variants.repo, "rm", "-rq", "client_app")
    git(variants.repo, "commit", "-qm", "an app without client_app")
    try:
        run = smship("deploy", ENV, "-o", "json", inventory=inventory)
        assert run.returncode == 0, run.output[-3000:]
        assert "nothing to build" in run.output
        release = run.document["audit"]["release"]
        for host in WEB:
            assert served_release(lab, host) == release
    finally:
        variants.undo()


def test_a_front_end_at_its_own_url_is_served_immutable_with_an_spa_fallback(lab, smship, variants):
    inventory = variants.inventory(files={"client_app/public/index.html": "<!doctype html><title>spa</title>\n"},
                                   message="the front end at /app/")
    data = yaml.safe_load(inventory.read_text())
    data["app"]["frontend"] = {"url": "/app/"}
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        # A new URL is nginx's configuration: provisioning applies it, then the deploy ships there.
        smship("provision", ENV, inventory=inventory, check=True)
        run = smship("deploy", ENV, "-o", "json", inventory=inventory)
        assert run.returncode == 0, run.output[-3000:]
        for host in WEB:
            asset = remote(lab, host, "ls /var/www/refapp/frontend/app/assets | grep -m1 '\\.js$'").strip()
            curl = "curl -sk -H 'Host: refapp.lab.test' "
            headers = remote(lab, host, f"{curl} -I https://127.0.0.1/app/assets/{asset}").lower()
            assert headers.startswith("http/2 200"), headers
            assert "cache-control: public, immutable" in headers and "cache-control: max-age=31536000" in headers
            assert "<title>spa</title>" in remote(lab, host, f"{curl} https://127.0.0.1/app/orders/42")
            missing = remote(lab, host, f"{curl} -o /dev/null -w '%{{http_code}}' https://127.0.0.1/app/assets/x.js")
            assert missing == "404"
            assert served_release(lab, host) == run.document["audit"]["release"]
    finally:
        # The rest of the story runs the reference app as it is: smpy's /static/dist/ again.
        variants.undo()
        reference = variants.inventory(message="the reference front end again")
        smship("provision", ENV, inventory=reference, check=True)
        smship("deploy", ENV, inventory=reference, check=True)
    for host in WEB:
        asset = remote(lab, host, "ls /var/www/refapp/static/dist/assets | grep -m1 '\\.js$'").strip()
        headers = remote(lab, host, "curl -skI -H 'Host: refapp.lab.test' "
                                    f"https://127.0.0.1/static/dist/assets/{asset}").lower()
        assert headers.startswith("http/2 200") and "cache-control: public, immutable" in headers, headers
