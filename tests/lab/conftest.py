"""Fixtures that bring the session's lab to a provisioned, then deployed, state.

``provisioned`` and ``deployed`` run once per session; tests that change the
fleet leave it deployed and healthy (or say in their name that they do not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from labkit import ENV, SmshipRun, Variants, lab_env, remote, run_smship, write_inventory  # noqa: F401  (re-exported for tests)


# The lab tests share one fleet per session and tell its story in order: the lab
# itself, a fresh provision, the first deploy and what follows it, drills, then
# the commands that reconfigure the fleet (secrets, S3, backups) last.
STORY = ("test_lab", "test_provision", "test_deploy", "test_drills", "test_check", "test_network_lockdown",
         "test_status_logs", "test_app_contract", "test_hardening", "test_rotate_secret", "test_storage", "test_backup", "test_distro",
         "test_init_inventory", "test_pooler", "test_log_shipping", "test_second_app")


# The story that matters most, run again on Debian 12 hosts (marker debian12; see
# scripts/test): provision, deploy under a steady client, rollback, rotate-secret,
# backup verify. The fixtures they use bring the fleet to each step on their own.
DEBIAN12_PASS = {
    "test_lab": ("test_three_hosts_boot_with_their_own_identity",),
    "test_provision": ("test_first_run_changes_every_host_and_a_second_run_changes_and_restarts_nothing",),
    "test_deploy": ("test_first_deploy_migrates_once_and_starts_every_tier",
                    "test_deploy_rolls_a_new_release_with_no_failed_request",
                    "test_rollback_switches_back_without_migrating_and_with_no_failed_request"),
    "test_rotate_secret": ("test_rotation_invalidates_sessions_changes_only_the_key_and_never_shows_it",),
    "test_backup": ("test_backup_verify_restores_rows_written_after_the_base_backup",),
    "test_distro": ("test_the_hosts_own_postgres_and_python_run_the_app",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.originalname in DEBIAN12_PASS.get(Path(str(item.fspath)).stem, ()):
            item.add_marker(pytest.mark.debian12)

    def chapter(item: pytest.Item) -> int:
        name = Path(str(item.fspath)).stem
        return STORY.index(name) if name in STORY else -1  # others (quick, no lab) first
    items.sort(key=chapter)  # stable: tests keep their order within a file


@pytest.fixture(scope="session")
def smship(lab) -> Callable[..., SmshipRun]:
    """smship against the lab's own inventory (pass inventory= for another one)."""
    def call(*argv: str, inventory: Path | None = None, **kwargs) -> SmshipRun:
        return run_smship(*argv, inventory=inventory or lab.inventory, **kwargs)
    return call


@pytest.fixture(scope="session")
def provisioned(lab, smship) -> SmshipRun:
    """The first provisioning of the session's fresh hosts (its run, for tests to read)."""
    return smship("provision", ENV, "-o", "json", check=True)


@pytest.fixture(scope="session")
def deployed(provisioned, smship) -> SmshipRun:
    """The reference app deployed once (its run)."""
    return smship("deploy", ENV, "-o", "json", check=True)


@pytest.fixture(scope="module")
def variants(lab, deployed, tmp_path_factory) -> Variants:
    """A scratch repository of the reference app, for the releases one test module deploys."""
    return Variants(lab, tmp_path_factory.mktemp("variants"))


@pytest.fixture(scope="session")
def s3_server(lab, tmp_path_factory):
    """moto's S3 server behind nginx TLS on the lab bridge's address; stopped at the end of the session."""
    from s3kit import S3Server, resolve_on_hosts

    address = str(lab.lab.net.gateway)
    server = S3Server(tmp_path_factory.mktemp("s3"), address).start()
    try:
        resolve_on_hosts(lab, address)
        yield server
    finally:
        server.stop()
