"""The database probe of `smship check`, run for real against a throwaway Postgres on loopback.

The probe must read the database with whichever driver the app ships
(psycopg 3, psycopg2 or asyncpg), whatever driver the URL names, keep the
URL's password out of its answer, and say so when it cannot run at all
without blaming Postgres.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from smship.checklist import checks
from smship.checklist.dbprobe import PROBE, parse_probe
from test_checklist import facts, judge

PASSWORD = "s3cret-probe-pw"
SETTING = "APP_DB_URL"


def available(name: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(name) is not None


def python_with(driver: str) -> str | None:
    """A Python that has ``driver``: this one, or Debian's (python3-psycopg2 for an app on psycopg2)."""
    if available(driver):
        return sys.executable
    system = subprocess.run(["/usr/bin/python3", "-c", f"import {driver}"], capture_output=True)
    return "/usr/bin/python3" if system.returncode == 0 else None


@pytest.fixture(scope="module")
def postgres():
    """A Postgres of its own, as the postgres user, listening on 127.0.0.1 with password logins only."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if not initdb or os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs Postgres's initdb and root (to run it as the postgres user)")
    bindir = Path(initdb).resolve().parent
    work = Path(tempfile.mkdtemp(prefix="smship-dbprobe-"))
    (work / "pw").write_text(PASSWORD + "\n")
    shutil.chown(work, "postgres")
    shutil.chown(work / "pw", "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def as_postgres(*argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, timeout=120)

    as_postgres(str(bindir / "initdb"), "-D", str(work / "data"), "-U", "postgres", "-A", "scram-sha-256",
                f"--pwfile={work / 'pw'}")
    as_postgres(str(bindir / "pg_ctl"), "-D", str(work / "data"), "-w", "-l", str(work / "log"), "-o",
                f"-p {port} -k {work} -c listen_addresses=127.0.0.1", "start")
    try:
        sql = ("create table alembic_version (version_num varchar(32) primary key);"
               "insert into alembic_version values ('0002');"
               "create table users (id serial primary key, is_admin boolean not null);"
               "insert into users (is_admin) values (true), (false);")
        subprocess.run([str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
                        "-U", "postgres", "-d", "postgres", "-c", sql], check=True, capture_output=True,
                       env={**os.environ, "PGPASSWORD": PASSWORD}, timeout=60)
        yield port
    finally:
        as_postgres(str(bindir / "pg_ctl"), "-D", str(work / "data"), "-m", "immediate", "stop")
        shutil.rmtree(work, ignore_errors=True)


def probe(python: str, url: str, *drivers: str) -> tuple[dict, str]:
    """The probe run as on a host: the URL in the environment only, never in argv."""
    proc = subprocess.run([python, "-", SETTING, *drivers], input=PROBE, capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], SETTING: url}, cwd=tempfile.gettempdir())
    assert proc.returncode == 0, proc.stderr
    return parse_probe(proc.stdout), proc.stdout + proc.stderr


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2", "asyncpg"])
@pytest.mark.parametrize("scheme", ["postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2", "postgresql"])
def test_the_probe_reads_the_database_with_the_one_driver_the_app_ships(postgres, driver, scheme):
    python = python_with(driver)
    if python is None:
        pytest.skip(f"{driver} is not installed in the test environment (scripts/setup-deps installs it)")
    answer, _ = probe(python, f"{scheme}://postgres:{PASSWORD}@127.0.0.1:{postgres}/postgres", driver)
    assert answer.driver == driver, answer
    assert answer.max_connections > 0 and answer.reserved_connections >= 0, answer
    assert answer.revisions == ("0002",) and answer.admins == 1, answer


def test_a_database_at_the_releases_recorded_heads_is_known_without_alembic(postgres, tmp_path):
    driver = next(d for d in ("psycopg", "psycopg2", "asyncpg") if python_with(d))
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{postgres}/postgres"
    manifest = tmp_path / "release.json"
    manifest.write_text(json.dumps({"alembic_heads": ["0002"]}))
    # No alembic.ini where the probe runs: only the manifest can say 0002 is known.
    answer, _ = probe(python_with(driver), url, driver, f"--manifest={manifest}")
    assert answer.revisions == ("0002",) and answer.known == ("0002",), answer
    manifest.write_text(json.dumps({"alembic_heads": ["0003"]}))
    elsewhere, _ = probe(python_with(driver), url, driver, f"--manifest={manifest}")
    assert elsewhere.revisions == ("0002",) and elsewhere.known == (), elsewhere


def test_a_refused_login_blames_the_database_and_never_shows_the_password(postgres):
    drivers = [d for d in ("psycopg", "psycopg2", "asyncpg") if python_with(d)]
    assert drivers
    for driver in drivers:
        answer, output = probe(python_with(driver), f"postgresql+asyncpg://postgres:wrong-{PASSWORD}@127.0.0.1:{postgres}"
                               "/postgres", driver)
        assert answer.cause == "database" and "password" in answer.error, answer
        assert PASSWORD not in output, output


def test_a_release_without_any_driver_says_so_without_blaming_postgres(tmp_path):
    # A Python with none of the drivers: the app shipped another one (or none).
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    answer, output = probe(str(bare / "bin" / "python"),
                           f"postgresql+psycopg2://app:{PASSWORD}@127.0.0.1:5432/app", "psycopg", "psycopg2", "asyncpg")
    assert answer.cause == "probe", answer
    assert "no Postgres driver" in answer.error and "psycopg2" in answer.error, answer
    assert PASSWORD not in output
    made = facts(db=answer)
    verdict = judge("migrations", made)
    assert verdict.status == "fail" and "no Postgres driver" in verdict.reason
    assert "Postgres runs" not in verdict.fix and "--skip-check migrations,admin,connection-budget" in verdict.fix
    small = facts(db=answer)
    for values in [small.inventory.values] + [h.env.values for h in small.hosts.values()]:
        values.update(SM_DB_POOL_SIZE="2", SM_DB_MAX_OVERFLOW="2")
    budget = judge("connection-budget", small)
    assert budget.status == "warn" and "no Postgres driver" in budget.reason, budget
    assert "Postgres on" not in budget.fix and "--skip-check" in budget.fix, budget.fix


def test_an_unset_url_variable_is_named():
    proc = subprocess.run([sys.executable, "-", SETTING, "psycopg"], input=PROBE, capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ["PATH"]})
    answer = parse_probe(proc.stdout)
    assert answer.cause == "probe" and answer.error == f"{SETTING} is not set in the app's env file"
    assert json.loads(proc.stdout)["cause"] == "probe"
