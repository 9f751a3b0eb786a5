"""The app contract where it reaches the hosts: units, env file, release steps, health, checks, key names."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from smship.appenv import app_settings
from smship.checklist import checks
from smship.checklist.dbprobe import DatabaseFacts
from smship.checklist.facts import Facts, Settings, frontend_manifest, host_request, plain_settings
from smship.checklist.run import INVENTORY_SKIP, skipped_checks
from smship.context import EnvContext
from smship.steps.migrate import current_revision_command, release_steps, uses_alembic
from smship.steps.roll import health_request
from smship.errors import SmshipError
from smship.inventory import InventoryError, load
from smship.layout import Layout
from smship.engine.roles import desired_state
from smship.engine.variables import host_variables, roles_of
from smship.remote.agent import judge_endpoint
from smship.remote.client import EnvFileChecks, HostChecks
from smship.secretkey import weakness
from smship.secrets import EnvBackend
from smship.templating import environment, systemd_command, systemd_word

ROOT = Path(__file__).resolve().parents[2]
AWS = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-example"}
SECRETS = {"SM_SECRET_KEY": "k" * 64, "SM_DB_PASSWORD": "db'pass", "SM_REDIS_PASSWORD": "redispass", **AWS}
OWN_NAMES = {"environment": "APP_ENV", "database_url": "DATABASE_URL", "database_driver": "postgresql+psycopg",
             "redis_url": "REDIS_URL", "broker_url": "CELERY_BROKER_URL", "secret_key": "SECRET_KEY",
             "file_storage_path": None, "log_format": None, "db_pool_size": "POOL", "db_max_overflow": None,
             "secrets": ["STRIPE_KEY"]}
OWN_SECRETS = {"SECRET_KEY": "s" * 64, "SM_DB_PASSWORD": "dbpass", "SM_REDIS_PASSWORD": "redispass",
               "STRIPE_KEY": "sk_live_example", **AWS}


def project(tmp_path: Path, app: dict | None = None, env: dict | None = None, hosts: list | None = None) -> Path:
    """inventory.example with ``app`` and ``env`` merged into it, in a project folder with TLS files."""
    (tmp_path / "cert.pem").write_text("CERT\n")
    (tmp_path / "key.pem").write_text("KEY\n")
    data = yaml.safe_load((ROOT / "inventory.example").read_text())
    data["app"].update(app or {})
    prod = data["environments"]["prod"]
    prod["tls"] = {"source": "files", "certificate": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")}
    prod.update(env or {})
    if hosts is not None:
        prod["hosts"] = hosts
    (tmp_path / "smship.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "smship.yml"


def files_of(inventory: Path, host_name: str, secrets: dict = SECRETS) -> dict[str, str]:
    ctx = EnvContext.open("prod", inventory)
    host = next(h for h in ctx.env.hosts if h.name == host_name)
    state = desired_state(roles_of(ctx.env, host), host_variables(ctx, host, secrets), inventory.parent,
                          environment(inventory.parent))
    return {f.path: f.content.decode() for f in state.files}


def exec_start(files: dict[str, str], unit: str) -> str:
    text = next(content for path, content in files.items() if path.endswith(unit))
    return next(line for line in text.splitlines() if line.startswith("ExecStart="))


# --- one quoting function for systemd command lines

@pytest.mark.parametrize(("word", "quoted"), [
    ("main:app", "main:app"),
    ("--root-path=/api", "--root-path=/api"),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("back\\slash", '"back\\\\slash"'),
    ("100%", "100%%"),
    ("$HOME", "$$HOME"),
    ("a;b", '"a;b"'),
    (";", '";"'),
    ("", '""'),
])
def test_systemd_words_are_quoted_so_systemd_reads_them_back_unchanged(word, quoted):
    assert systemd_word(word) == quoted


def test_systemd_command_refuses_control_characters_and_a_plain_string():
    with pytest.raises(ValueError):
        systemd_word("a\nExecStartPre=/bin/sh")
    with pytest.raises(TypeError):
        systemd_command("uvicorn main:app")
    assert systemd_command(["--header", "x-a:b c"]) == '--header "x-a:b c"'


# --- units

def test_default_units_are_the_smpy_ones(tmp_path):
    web = exec_start(files_of(project(tmp_path), "web1"), "shop-web@.service")
    assert web.endswith("/.venv/bin/uvicorn main:app --fd 3 --workers 2 --proxy-headers --forwarded-allow-ips "
                        "* --timeout-graceful-shutdown 25")
    jobs = files_of(project(tmp_path), "jobs1")
    assert " -A scripts.run_worker:celery worker " in exec_start(jobs, "shop-worker@.service")
    assert exec_start(jobs, "shop-beat.service").endswith(" -A scripts.run_worker:celery beat --loglevel INFO "
                                                          "--schedule /var/lib/shop-beat/schedule")


def test_declared_processes_and_their_arguments_reach_the_units_quoted(tmp_path):
    inventory = project(tmp_path, app={
        "web": {"app": "backend.api:app", "args": ["--root-path", "/api", "--header", "x-shop:yes please"]},
        "worker": {"app": "backend.jobs:celery", "args": ["--pool", "threads"]},
        "beat": {"args": ["--max-interval", "5"]},
    })
    web = exec_start(files_of(inventory, "web1"), "shop-web@.service")
    assert "/uvicorn backend.api:app --fd 3 " in web
    assert web.endswith('--timeout-graceful-shutdown 25 --root-path /api --header "x-shop:yes please"')
    jobs = files_of(inventory, "jobs1")
    assert " -A backend.jobs:celery worker " in exec_start(jobs, "shop-worker@.service")
    assert exec_start(jobs, "shop-worker@.service").endswith(" --pool threads")
    # Beat runs the worker's Celery app unless it names its own.
    beat = exec_start(jobs, "shop-beat.service")
    assert " -A backend.jobs:celery beat " in beat and beat.endswith(" --max-interval 5")


def test_a_web_tier_without_celery_is_valid_and_renders_no_worker_or_beat(tmp_path):
    hosts = [{"name": "web1", "address": "10.0.0.11", "roles": ["web"]},
             {"name": "db1", "address": "10.0.0.21", "roles": ["db"]}]
    inventory = project(tmp_path, hosts=hosts)
    files = files_of(inventory, "web1")
    assert any(p.endswith("shop-web@.service") for p in files)
    assert not any(p.endswith(("shop-worker.service", "shop-beat.service")) for p in files)


# --- the env file under the app's names

def test_default_env_file_names_are_the_smpy_ones(tmp_path):
    inventory = load(project(tmp_path))
    values = app_settings(inventory.app, inventory.environment("prod"), SECRETS, "secrets.env")
    assert values["SM_DATABASE_URL"].startswith("postgresql+asyncpg://shop:db%27pass@")
    assert values["SM_REDIS_URL"].startswith("redis://:redispass@")
    assert values["SM_SECRET_KEY"] == "k" * 64 and values["SM_ENVIRONMENT"] == "production"
    assert values["SM_FILE_STORAGE_PATH"] == "/srv/shop/shared/uploads"


def test_env_file_uses_the_apps_own_names_driver_and_extra_secrets(tmp_path):
    inventory = load(project(tmp_path, app={"settings": OWN_NAMES}, env={"env": {"APP_ENV": "staging"}}))
    values = app_settings(inventory.app, inventory.environment("prod"), OWN_SECRETS, "secrets.env")
    assert values["DATABASE_URL"].startswith("postgresql+psycopg://shop:dbpass@")
    assert values["REDIS_URL"] == values["CELERY_BROKER_URL"] and values["REDIS_URL"].startswith("redis://")
    assert values["SECRET_KEY"] == "s" * 64 and values["STRIPE_KEY"] == "sk_live_example"
    assert values["APP_ENV"] == "staging"
    assert not {"SM_SECRET_KEY", "SM_DATABASE_URL", "SM_REDIS_URL", "SM_ENVIRONMENT", "SM_FILE_STORAGE_PATH"} & set(values)
    env_file = files_of(inventory.path, "web1", OWN_SECRETS)["/srv/shop/shared/env"]
    assert "SECRET_KEY=" + "s" * 64 in env_file and "STRIPE_KEY=sk_live_example" in env_file


@pytest.mark.parametrize("driver", ["postgresql+asyncpg", "postgresql+psycopg", "postgresql+psycopg2", "postgresql"])
def test_the_database_url_has_the_declared_driver(tmp_path, driver):
    inventory = load(project(tmp_path, app={"settings": {"database_driver": driver}}))
    url = app_settings(inventory.app, inventory.environment("prod"), SECRETS, "s")["SM_DATABASE_URL"]
    assert url.startswith(driver + "://shop:")


def test_missing_secrets_are_named_under_the_apps_names_with_the_backend(tmp_path):
    inventory = load(project(tmp_path, app={"settings": OWN_NAMES}))
    app, env = inventory.app, inventory.environment("prod")
    with pytest.raises(SmshipError, match=r"^vault\.env: STRIPE_KEY is not set \(app.settings.secrets names it\)$"):
        app_settings(app, env, {k: v for k, v in OWN_SECRETS.items() if k != "STRIPE_KEY"}, "vault.env")
    with pytest.raises(SmshipError, match=r"^vault\.env: SECRET_KEY is not set"):
        app_settings(app, env, SECRETS, "vault.env")


def test_the_env_backend_reads_the_apps_own_names(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "from-ci")
    monkeypatch.setenv("SECRET_KEY_PREVIOUS", "older")
    assert "SECRET_KEY" not in EnvBackend().read()
    read = EnvBackend(("SECRET_KEY",)).read()
    assert read["SECRET_KEY"] == "from-ci" and read["SECRET_KEY_PREVIOUS"] == "older"


def test_the_key_rule_speaks_the_apps_name_for_the_key():
    assert weakness("", "SECRET_KEY") == "SECRET_KEY is not set"
    assert weakness("changeme", "SECRET_KEY") == "SECRET_KEY is a known default value"
    assert weakness(None) == "SM_SECRET_KEY is not set"


# --- release steps

def test_default_release_step_is_alembic_upgrade_head_in_host(tmp_path):
    inventory = load(project(tmp_path))
    layout = Layout.of(inventory.app, inventory.environment("prod"))
    [step] = release_steps(inventory.app, layout, "r1")
    argv = step.command.argv
    assert (step.kind, step.words) == ("migration", ("alembic", "upgrade", "head"))
    assert "WorkingDirectory=/srv/shop/releases/r1/host" in argv and "EnvironmentFile=/srv/shop/shared/env" in argv
    assert "User=shop" in argv and step.command.sudo
    # The release steps' own settings (a database URL past a pooler) follow the env file, when written.
    assert argv.index("EnvironmentFile=-/srv/shop/shared/env.direct") > argv.index("EnvironmentFile=/srv/shop/shared/env")
    # The venv's programs first; the words stay arguments of exec, never shell text.
    assert argv[argv.index("/usr/bin/env") + 1] == "PATH=/srv/shop/releases/r1/.venv/bin:/usr/local/bin:/usr/bin:/bin"
    assert argv[-6:] == ("-c", 'exec "$@"', "sh", "alembic", "upgrade", "head")
    assert uses_alembic(inventory.app)
    assert "WorkingDirectory=/srv/shop/releases/r1/host" in current_revision_command(inventory.app, layout, "r1").argv


def test_declared_migration_and_release_commands_run_in_order(tmp_path):
    inventory = load(project(tmp_path, app={
        "migrate": {"command": "python -m app.migrate --to 'latest rev'", "cwd": "backend/.."},
        "release_commands": ["python -m app.seed --admin", ["echo", "$HOME; rm -rf /"]]}))
    layout = Layout.of(inventory.app, inventory.environment("prod"))
    steps = release_steps(inventory.app, layout, "r2")
    assert [s.kind for s in steps] == ["migration", "release command", "release command"]
    assert steps[0].words == ("python", "-m", "app.migrate", "--to", "latest rev")
    assert "WorkingDirectory=/srv/shop/releases/r2" in steps[0].command.argv
    assert "WorkingDirectory=/srv/shop/releases/r2" in steps[1].command.argv
    assert steps[2].command.argv[-2:] == ("echo", "$HOME; rm -rf /")
    assert not uses_alembic(inventory.app)


def test_no_migration_leaves_only_the_release_commands(tmp_path):
    inventory = load(project(tmp_path, app={"migrate": False, "release_commands": ["python seed.py"]}))
    layout = Layout.of(inventory.app, inventory.environment("prod"))
    assert [s.kind for s in release_steps(inventory.app, layout, "r3")] == ["release command"]
    assert not uses_alembic(inventory.app)
    assert uses_alembic(load(project(tmp_path, app={"migrate": {"command": "python -m alembic upgrade head"}})).app)


# --- health

STATUS = {"path": "/health/ready", "expect": "status", "body": None}


@pytest.mark.parametrize(("endpoint", "which", "status", "body", "degraded", "healthy"), [
    (STATUS, "ready", 200, b'{"status": "healthy"}', False, True),
    (STATUS, "ready", 200, b'{"status": "degraded"}', False, False),
    (STATUS, "ready", 200, b'{"status": "degraded"}', True, True),
    (STATUS, "ready", 503, b'{"status": "healthy"}', False, False),
    (STATUS, "live", 200, b'{"status": "alive"}', False, True),
    (STATUS, "live", 200, b"alive", False, False),
    ({"path": "/healthz/", "expect": "2xx", "body": None}, "ready", 204, b"", False, True),
    ({"path": "/healthz/", "expect": "2xx", "body": None}, "ready", 307, b"", False, False),
    ({"path": "/ping", "expect": "body", "body": "true"}, "ready", 200, b"true\n", False, True),
    ({"path": "/ping", "expect": "body", "body": "true"}, "ready", 200, b"false", False, False),
    ({"path": "/ping", "expect": "body", "body": "true"}, "ready", 500, b"true", False, False),
])
def test_each_endpoint_is_judged_by_its_expectation(endpoint, which, status, body, degraded, healthy):
    assert judge_endpoint(endpoint, which, status, body, accept_degraded=degraded)[0] is healthy


def test_a_failed_answer_says_what_came_back():
    assert judge_endpoint(STATUS, "ready", 503, b'{"status": "unhealthy"}')[1] == "HTTP 503 with status 'unhealthy'"
    body = {"path": "/ping", "expect": "body", "body": "true"}
    assert judge_endpoint(body, "ready", 200, b"nope")[1] == "HTTP 200 'nope'"


def test_the_health_request_carries_each_endpoint_with_its_expectation(tmp_path):
    inventory = project(tmp_path, env={"health": {"live": "/healthz/",
                                                  "ready": {"path": "/ready/", "expect": "body", "body": "true"}}})
    ctx = EnvContext.open("prod", inventory)
    request = health_request(ctx, Layout.of(ctx.app, ctx.env))
    assert request["live"] == {"path": "/healthz/", "expect": "status", "body": None}
    assert request["ready"] == {"path": "/ready/", "expect": "body", "body": "true"}


# --- checks follow the contract

def facts_for(tmp_path: Path, app: dict | None = None, env: dict | None = None, values: dict | None = None,
              scheme: str = "postgresql+asyncpg") -> Facts:
    loaded = load(project(tmp_path, app=app, env=env))
    prod = loaded.environment("prod")
    ctx = SimpleNamespace(env=prod, name="prod", app=loaded.app)
    made = Facts(ctx, Layout.of(loaded.app, prod))
    good = Settings(values or {"SM_ENVIRONMENT": "production", "SM_LOG_FORMAT": "json"}, scheme, None)
    made.inventory = good
    for host in prod.hosts:
        made.hosts[host.name] = HostChecks(
            current="r2", alembic_heads=["0002"], frontend=False, units={},
            beat="active" if "beat" in host.roles else "inactive", nginx=None, nginx_error=None, certificate=None,
            drained=False, os=None, env=EnvFileChecks(dict(good.values), scheme, None))
    made.db_host = next(h.name for h in prod.hosts if "web" in h.roles)
    made.db = DatabaseFacts(max_connections=100, reserved_connections=3, revisions=("0001",), known=("0001",),
                            admins=0)
    return made


def verdict(name: str, made: Facts):
    return next(c for c in checks.CHECKS if c.name == name).judge(made)


def test_settings_checks_judge_the_apps_names_and_driver(tmp_path):
    made = facts_for(tmp_path, app={"settings": OWN_NAMES}, values={"APP_ENV": "development"},
                     scheme="postgresql+psycopg")
    assert verdict("environment", made).reason.startswith("APP_ENV is 'development' (inventory")
    assert verdict("database-url", made).status == "pass"
    assert verdict("log-format", made).status == "pass"  # the app declares no log format setting
    web1 = made.hosts["web1"]
    made.hosts["web1"] = replace(web1, env=replace(web1.env, database_scheme="postgresql+asyncpg"))
    assert verdict("database-url", made).reason == \
        "DATABASE_URL is postgresql+asyncpg://, not postgresql+psycopg:// (web1)"


def test_frontend_and_migrations_pass_when_the_app_declares_none(tmp_path):
    defaults = facts_for(tmp_path)
    assert verdict("frontend", defaults).status == "fail"  # the smpy default: the manifest must be there
    assert "static/dist/.vite/manifest.json is missing" in verdict("frontend", defaults).reason
    assert verdict("migrations", defaults).status == "fail"
    bare = facts_for(tmp_path, app={"frontend": False, "migrate": False})
    assert verdict("frontend", bare).status == "pass" and "no front end" in verdict("frontend", bare).reason
    assert verdict("migrations", bare).status == "pass"
    no_manifest = facts_for(tmp_path, app={"frontend": {"manifest": None}})
    assert verdict("frontend", no_manifest).status == "pass"


def test_the_frontend_manifest_is_looked_for_under_the_declared_output():
    from smship.contract import AppContract

    assert frontend_manifest(AppContract()) == "static/dist/.vite/manifest.json"
    assert frontend_manifest(AppContract(frontend={"output": "web/build", "manifest": "asset-manifest.json"})) == \
        "web/build/asset-manifest.json"
    # A build outside app.root (a monorepo's ../frontend/dist) travels in the release as _frontend/.
    assert frontend_manifest(AppContract(frontend={"dir": "../frontend", "output": "../frontend/dist",
                                                   "manifest": "manifest.json"})) == "_frontend/manifest.json"


def test_the_connection_budget_reads_the_apps_pool_names(tmp_path):
    made = facts_for(tmp_path, app={"settings": OWN_NAMES}, values={"POOL": "50"})
    for host in made.hosts.values():
        host.env.values.clear()
        host.env.values["POOL"] = "50"
    numbers = checks.budget_numbers(made)
    # POOL is the app's pool size; it declares no overflow name, so the framework's 20 counts.
    assert {ceiling for _, _, ceiling in numbers.rows} == {70}


def test_the_host_request_names_the_apps_settings(tmp_path):
    loaded = load(project(tmp_path, app={"settings": OWN_NAMES, "frontend": False}))
    layout = Layout.of(loaded.app, loaded.environment("prod"))
    web1 = next(h for h in loaded.environment("prod").hosts if h.name == "web1")
    request = host_request(loaded.app, layout, web1).fields
    assert (request["database_url"], request["secret_key"]) == ("DATABASE_URL", "SECRET_KEY")
    assert request["plain"] == plain_settings(loaded.app) == ["APP_ENV", "POOL"]
    assert request["frontend_manifest"] is None


def test_checks_skip_turns_checks_off_and_says_where(tmp_path):
    inventory = project(tmp_path, env={"checks": {"skip": ["admin", "frontend"]}})
    ctx = SimpleNamespace(env=load(inventory).environment("prod"))
    assert skipped_checks(ctx, ["tls", "admin"]) == {"tls": "skipped with --skip-check", "admin":
                                                     "skipped with --skip-check", "frontend": INVENTORY_SKIP}


def test_an_unknown_check_in_checks_skip_is_one_line_with_file_line_and_field(tmp_path):
    inventory = project(tmp_path, env={"checks": {"skip": ["admin", "admn"]}})
    with pytest.raises(InventoryError) as caught:
        load(inventory)
    [problem] = caught.value.problems
    assert problem.startswith(f"{inventory}:") and "environments.prod.checks.skip: 'admn' is not a check" in problem
    assert "\n" not in problem


def test_the_check_names_the_inventory_knows_are_the_checklists():
    from smship.checknames import CHECK_NAMES

    assert list(CHECK_NAMES) == checks.NAMES


def test_the_apps_own_secret_names_are_refused_in_env(tmp_path):
    inventory = project(tmp_path, app={"settings": OWN_NAMES}, env={"env": {"STRIPE_KEY": "sk_live_x"}})
    with pytest.raises(InventoryError) as caught:
        load(inventory)
    [problem] = caught.value.problems
    assert problem.startswith(f"{inventory}:") and "environments.prod.env.STRIPE_KEY: is a secret of the app" in problem


def test_the_database_probe_reads_the_url_under_the_apps_name_where_the_migration_runs(tmp_path):
    from smship.checklist.dbprobe import PROBE, probe_command

    loaded = load(project(tmp_path))
    layout = Layout.of(loaded.app, loaded.environment("prod"))
    default = probe_command(layout, "r1")
    url_name = lambda command: command.argv[command.argv.index("-") + 1]  # noqa: E731  (the probe reads stdin)
    assert url_name(default) == "SM_DATABASE_URL" and "WorkingDirectory=/srv/shop/releases/r1/host" in default.argv
    # The probe's program is on stdin: on the command line, sudo and systemd would log all of it.
    assert default.stdin == PROBE.encode() and not any("import" in word for word in default.argv)
    own = probe_command(layout, "r1", "DATABASE_URL", "backend")
    assert url_name(own) == "DATABASE_URL" and "WorkingDirectory=/srv/shop/releases/r1/backend" in own.argv


def test_a_failing_steps_output_is_shown_with_secret_values_masked():
    from smship.steps.migrate import masker

    mask = masker(["s3cr3t/pass", "k" * 40, "abc"])
    assert mask("url postgresql://u:s3cr3t%2Fpass@db/x key=" + "k" * 40) == "url postgresql://u:***@db/x key=***"
    assert mask("s3cr3t/pass") == "***" and mask("abc") == "abc"  # too short to tell from ordinary words
