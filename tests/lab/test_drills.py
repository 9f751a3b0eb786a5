"""Fault drills: a deploy meets a failure, and the fleet comes through it.

Each drill breaks one thing during `smship deploy` on the lab of
test_deploy (lab1 = [db, lb, beat], lab2 and lab3 = [web, worker]) and then
checks the same promises: the fleet keeps serving, no host is half-switched
(each host's `current` is a complete release), the deploy lock is released,
the message names the host and the cause, and running the deploy again
completes.  (A host killed mid-roll and a failing migration are drilled in
test_deploy.)

Network rule: only lab addresses on the test bridge are contacted.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from contextlib import ExitStack

import pytest

from labkit import (APP_HOSTS, APP_ROOT, ENV, WEB, SteadyClient, assert_no_failed_request, drained,
                    background_release, empty_releases_volume, fill_releases_volume, finish_smship, fleet_state,
                    give_releases_a_volume, interrupt, live_release, main_pids, psql, remote, served_release,
                    ssh_refused, start_smship, wait_for_line, web_pid)

pytestmark = pytest.mark.lab


def blob(megabytes: int) -> str:
    """A file of fresh random text: a release that takes a while to ship."""
    return os.urandom(megabytes * 512 * 1024).hex()


def assert_fleet_sound(lab, hosts=APP_HOSTS) -> None:
    """Every host's `current` is a complete release, no lock is left, every web host serves its live release."""
    for host in hosts:
        live = live_release(lab, host)
        assert remote(lab, host, f"test -f {APP_ROOT}/releases/{live}/.smship-complete && echo complete").strip() \
            == "complete", f"{host}: current -> {live}, not a complete release"
        assert remote(lab, host, f"test -e {APP_ROOT}/shared/deploy.lock && echo held || echo free").strip() == "free", \
            f"{host}: the deploy lock was left behind"
        if host in WEB:
            served = served_release(lab, host)
            assert served == live, (f"{host}: serves {served} while current -> {live}; its web slots: "
                                    + remote(lab, host, f"ls -l /var/www/refapp/web {APP_ROOT} 2>&1; "
                                                        "systemctl list-units --no-pager 'refapp-*' || true"))
            assert not drained(lab, host), f"{host} was left drained from the load balancer"


def rerun_completes(lab, smship, inventory) -> str:
    run = smship("deploy", ENV, "-o", "json", inventory=inventory, check=True)
    release = run.document["audit"]["release"]
    for host in APP_HOSTS:
        assert live_release(lab, host) == release
    assert_fleet_sound(lab)
    return release


def unchanged_then_a_rerun_completes(lab, smship, inventory, before) -> None:
    """Nothing was restarted or switched, the fleet is sound, and running the deploy again completes."""
    assert fleet_state(lab) == before
    assert_fleet_sound(lab)
    rerun_completes(lab, smship, inventory)


def test_a_release_that_crashes_on_boot_is_reverted_and_the_message_shows_the_crash(lab, smship, variants):
    inventory = variants.inventory(edits={"main.py": [("app = create_app()\n",
                                                       "raise RuntimeError('refapp refuses to boot')\n")]},
                                   message="crash at import")
    before = fleet_state(lab)
    web_pids = {h: web_pid(lab, h) for h in WEB}
    with ExitStack() as stack:
        clients = [stack.enter_context(SteadyClient(lab.address(h))) for h in ("lab1", "lab3")]
        time.sleep(1)
        began = time.monotonic()
        run = smship("deploy", ENV, inventory=inventory, check=False)
        took = time.monotonic() - began
    variants.undo()
    assert_no_failed_request(clients)
    halted = run.stderr.split("deploy halted")[-1]
    assert "lab2" in halted and "refapp refuses to boot" in halted, run
    assert before["lab2"][0] + " kept serving; the new release never took a request" in run.output, run
    # A crash is seen when it happens, not after the whole health timeout (45 s).
    assert took < 45 + 60, f"the deploy took {took:.0f}s"
    after = fleet_state(lab)
    assert {h: after[h][0] for h in APP_HOSTS} == {h: before[h][0] for h in APP_HOSTS}
    assert web_pid(lab, "lab3") == web_pids["lab3"], "a host after the failing batch was restarted"
    # The new release crashed in lab2's idle web slot: the serving one never stopped.
    assert web_pid(lab, "lab2") == web_pids["lab2"], "lab2's serving web slot was restarted"
    # The workers and beat (whose entry point does not import the web app) started it beside the failing
    # batch, and went back to the release they ran.
    assert {h: background_release(lab, h) for h in APP_HOSTS} == {h: before[h][0] for h in APP_HOSTS}
    assert_fleet_sound(lab)


def test_a_worker_that_crashes_on_start_halts_the_deploy_with_its_crash(lab, smship, variants):
    # Only the Celery entry point breaks: the web tier rolls and passes its gate, the worker tier
    # must not (a worker that never logs "ready." is watched until systemd counts its restart).
    inventory = variants.inventory(edits={"scripts/run_worker.py": [
        ("celery = make_celery(Settings.from_env())\n", "raise RuntimeError('the worker refuses to start')\n")]},
        message="worker crash at import")
    before = fleet_state(lab)
    run = smship("deploy", ENV, inventory=inventory, check=False)
    variants.undo()
    assert run.returncode != 0, run
    halted = run.stderr.split("deploy halted")[-1]
    for host in ("lab2", "lab3"):
        assert re.search(f"{host}: refapp-worker@[ab].service crashed after the restart", halted), run
    assert "lab1: refapp-beat.service crashed after the restart" in halted, run
    assert "the worker refuses to start" in halted, run
    # The beat host went back to the release it ran; the web hosts' tier already runs the new one.
    assert live_release(lab, "lab1") == before["lab1"][0]
    assert "switched back to " + before["lab1"][0] in halted, run
    rerun_completes(lab, smship, inventory)


def test_postgres_down_fails_the_migration_restarts_nothing_and_a_rerun_completes(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 'postgres down'\n"})
    before = fleet_state(lab)
    remote(lab, "lab1", "systemctl stop postgresql")
    try:
        with SteadyClient(lab.address("lab1")) as client:
            run = smship("deploy", ENV, inventory=inventory, check=False)
    finally:
        remote(lab, "lab1", "systemctl start postgresql")
    assert client.failures == [] and client.total >= 20, client.summary()
    assert "alembic upgrade head failed" in run.output and "lab2" in run.output, run
    assert "Connection refused" in run.output or "connection refused" in run.output, run
    unchanged_then_a_rerun_completes(lab, smship, inventory, before)


def close_rsync_connection(lab, host: str) -> None:
    """End this machine's ssh master to ``host`` (smship.ssh.mux), open or still logging in: with new
    connections refused, rsync then has none to ``host``."""
    address = re.escape(lab.address(host))
    subprocess.run(["pkill", "-f", f"ControlMaster=yes .* {address}$"], check=False, timeout=10)


def test_ssh_refused_on_one_host_is_named_and_changes_nothing(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/deploy_marker.py": "MARK = 'ssh refused'\n"})
    before = fleet_state(lab)

    # Before the deploy: preflight names the host, and nothing is locked or changed.
    with ssh_refused(lab, "lab3"):
        early = smship("deploy", ENV, inventory=inventory, check=False)
    assert "preflight failed" in early.output and "lab3" in early.output, early
    assert "connection refused" in early.output, early

    # During the deploy (sshd gone once the hosts answered the survey, and the connection rsync shares,
    # begun beside the checklist, closed as well): the ship to lab3 fails; the connections already open
    # still release the lock.
    deploy = start_smship("deploy", ENV, "-o", "json", inventory=inventory)
    try:
        wait_for_line(deploy, "preflight: the production checklist")
        with ssh_refused(lab, "lab3"):
            close_rsync_connection(lab, "lab3")
            run = finish_smship(deploy)
    finally:
        deploy.kill()
    assert run.returncode != 0, run
    assert run.document["audit"]["result"] == "failed: ship", run
    failure = next(r for r in run.document["hosts"] if r["status"] == "failed")
    assert failure["host"] == "lab3" and "refused" in failure["message"].lower(), run
    unchanged_then_a_rerun_completes(lab, smship, inventory, before)


def test_a_full_disk_on_one_host_fails_the_deploy_before_shipping_and_a_rerun_completes(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/drill_blob.txt": blob(1)}, message="disk full")
    before = fleet_state(lab)
    give_releases_a_volume(lab, "lab3")
    fill_releases_volume(lab, "lab3")
    try:
        run = smship("deploy", ENV, "-o", "json", inventory=inventory, check=False)
    finally:
        empty_releases_volume(lab, "lab3")
    # Seen before anything is shipped: the host's free space is part of the preflight survey.
    assert run.document["audit"]["result"] == "failed: disk space", run
    failure = next(r for r in run.document["hosts"] if r["status"] == "failed")
    assert failure["host"] == "lab3" and "no space for the release" in failure["message"], run
    unchanged_then_a_rerun_completes(lab, smship, inventory, before)


def test_a_host_powered_off_mid_ship_restarts_nothing_and_a_rerun_completes(lab, smship, variants):
    inventory = variants.inventory(files={"refapp/drill_blob.txt": blob(24)}, message="power off")
    before = fleet_state(lab)
    with SteadyClient(lab.address("lab1")) as through_lb:
        deploy = start_smship("deploy", ENV, "-o", "json", inventory=inventory)
        try:
            wait_for_line(deploy, "==> shipping")
            lab.kill("lab3")
        finally:
            run = finish_smship(deploy)
        time.sleep(2)
    assert run.returncode != 0, run
    assert run.document["audit"]["result"] == "failed: ship", run
    failure = next(r for r in run.document["hosts"] if r["status"] == "failed")
    assert failure["host"] == "lab3", run
    assert through_lb.failures == [] and through_lb.total >= 50, through_lb.summary()
    # The lock stays on lab3 (it was off when the lock was released), and says so.
    assert "still held on lab3" in run.stderr, run

    lab.start("lab3")
    assert fleet_state(lab, ("lab1", "lab2")) == \
        {h: before[h] for h in ("lab1", "lab2")}
    assert live_release(lab, "lab3") == before["lab3"][0]
    rerun = smship("deploy", ENV, "-o", "json", inventory=inventory, check=True)
    assert "removing a stale deploy lock" in rerun.stderr, rerun
    assert_fleet_sound(lab)


SLOW_MIGRATION = '''\
"""A migration that takes its time (it changes nothing)."""
from alembic import op

revision = "0003_slow"
down_revision = "0002_uploads_beat_ticks"


def upgrade():
    op.execute("SELECT pg_sleep(8)")


def downgrade():
    pass
'''

PHASES = {
    "ship": ("==> shipping", {"refapp/drill_blob.txt": lambda: blob(24)}),
    "install": ("==> installing", {}),
    "migrate": ("==> migrating the database once", {"host/migrations/versions/0003_slow.py": lambda: SLOW_MIGRATION}),
    "roll": ("deploy: web: batch 1/2", {}),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_ctrl_c_in_each_phase_leaves_the_fleet_whole_and_a_rerun_completes(lab, smship, variants, phase):
    needle, files = PHASES[phase]
    inventory = variants.inventory(files={"refapp/deploy_marker.py": f"MARK = 'ctrl-c {phase}'\n",
                                          **{path: make() for path, make in files.items()}},
                                   message=f"ctrl-c in {phase}")
    before = fleet_state(lab)
    lab3_web = web_pid(lab, "lab3")
    try:
        with ExitStack() as stack:
            clients = [stack.enter_context(SteadyClient(lab.address("lab1"))),
                       stack.enter_context(SteadyClient(lab.address("lab3")))]
            deploy = start_smship("deploy", ENV, inventory=inventory, new_session=True)
            try:
                wait_for_line(deploy, needle)
                interrupt(deploy)
            finally:
                run = finish_smship(deploy)
        assert run.returncode != 0, run
        assert "interrupted" in run.stderr, run
        assert_no_failed_request(clients)
        try:
            assert_fleet_sound(lab)
        except AssertionError as unsound:
            raise AssertionError(f"{unsound}\nthe interrupted deploy said:\n{run.stderr}") from None
        if phase == "migrate":
            if "waiting for the migration under way on" in run.stderr:
                # Waited for to its end under the lock, not left running for the rerun to meet.
                assert psql(lab, "SELECT version_num FROM alembic_version").strip() == "0003_slow", run
            else:
                # The Ctrl-C came before the migration began: none began, nor goes on (it would end in 8 s).
                time.sleep(10)
                assert psql(lab, "SELECT version_num FROM alembic_version").strip() == "0002_uploads_beat_ticks", run
        if phase != "roll":
            assert fleet_state(lab) == before, run
        else:
            # The workers' batch, begun with the first web batch, may have moved (Ctrl-C lets a batch end).
            assert web_pid(lab, "lab3") == lab3_web, "a host after the interrupted batch was restarted"
        rerun_completes(lab, smship, inventory)
    finally:
        if phase == "migrate":
            # Leave the database at the reference app's own head for the tests after this one.
            psql(lab, "UPDATE alembic_version SET version_num = '0002_uploads_beat_ticks'")
            variants.undo()
