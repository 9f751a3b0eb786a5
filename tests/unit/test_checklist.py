"""`smship check` and `smship logs`: the pure parts, on facts and text made by hand."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from smship.checklist import checks, tls
from smship.checklist.dbprobe import DatabaseFacts, parse_probe
from smship.checklist.facts import Facts, Settings
from smship.checklist.model import Check, parse_skips
from smship.checklist.nginx import forwards_headers
from smship.errors import SmshipError
from smship.inventory import load
from smship.layout import Layout
from smship.remote.client import EnvFileChecks, HostChecks, UnitChecks
from smship.ssh import Endpoint, SSHOptions, stream_argv
from smship.hostroles import units_of
from smship.status.logs import journal_command, no_unit_logged, prefix, since_argument

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory.example"


def answer(**fields) -> HostChecks:
    """One host's checkfacts answer: nothing deployed, nothing running, unless ``fields`` says otherwise."""
    empty = dict(current=None, alembic_heads=None, frontend=None, env=None, units={}, beat="inactive", nginx=None,
                 nginx_error=None, certificate=None, drained=False, os=None)
    return HostChecks(**{**empty, **fields})


def unit(exec_start: str, sm010: str | None = None) -> UnitChecks:
    return UnitChecks("active", "running", "loaded", exec_start, None, sm010)


def change(made: Facts, host: str, **fields) -> None:
    made.hosts[host] = replace(made.hosts[host], **fields)


def facts(**changes) -> Facts:
    loaded = load(EXAMPLE)
    env = loaded.environment("prod")
    ctx = SimpleNamespace(env=env, name="prod", app=loaded.app)
    made = Facts(ctx, Layout.of(loaded.app, env))
    good = Settings({"SM_ENVIRONMENT": "production", "SM_LOG_FORMAT": "json"}, "postgresql+asyncpg", None)
    made.inventory = good
    for host in env.hosts:
        made.hosts[host.name] = answer(current="r2", alembic_heads=["0002"], frontend=True,
                                       beat="active" if "beat" in host.roles else "inactive",
                                       env=EnvFileChecks(dict(good.values), "postgresql+asyncpg", None))
    made.db_host = next(h.name for h in env.hosts if "web" in h.roles)
    made.db = DatabaseFacts(max_connections=100, reserved_connections=3, revisions=("0002",), known=("0002",),
                            admins=1)
    for key, value in changes.items():
        setattr(made, key, value)
    return made


def judge(name: str, made: Facts, preflight: bool = False):
    check = next(c for c in checks.CHECKS if c.name == name)
    return check.judge(made, preflight)


def test_settings_checks_name_where_the_bad_value_is():
    made = facts()
    assert judge("log-format", made).status == "pass"
    made.hosts["web2"].env.values["SM_LOG_FORMAT"] = "text"
    verdict = judge("log-format", made)
    assert verdict.status == "fail" and verdict.reason == "SM_LOG_FORMAT is 'text' (web2)"
    assert "smship provision prod" in verdict.fix
    made.inventory.values["SM_ENVIRONMENT"] = "development"
    assert judge("environment", made).reason == "SM_ENVIRONMENT is 'development' (inventory)"


def test_secret_key_and_database_url_verdicts():
    made = facts()
    change(made, "web1", env=replace(made.hosts["web1"].env, secret_key_weakness="SM_SECRET_KEY is a known default value",
                                     database_scheme="sqlite"))
    assert judge("secret-key", made).reason == "SM_SECRET_KEY is a known default value (web1)"
    assert judge("database-url", made).reason == "SM_DATABASE_URL is sqlite://, not postgresql+asyncpg:// (web1)"


def test_migrations_behind_ahead_and_first_deploy():
    assert judge("migrations", facts()).status == "pass"
    behind = facts()
    behind.db = replace(behind.db, revisions=("0001",), known=("0001",))
    assert judge("migrations", behind).status == "fail"
    # A deploy migrates: its preflight only warns.
    assert judge("migrations", behind, preflight=True).status == "warn"
    ahead = facts()
    ahead.db = replace(ahead.db, revisions=("0003",), known=())
    assert judge("migrations", ahead).status == "warn"
    first = facts(db=None)
    for name in first.hosts:
        change(first, name, current=None)
    for name in ("migrations", "admin", "frontend", "sm010"):
        verdict = judge(name, first)
        assert verdict.status == "pass" and verdict.reason == checks.NO_LIVE, name


def test_an_unreadable_database_fails_its_checks():
    made = facts(db=DatabaseFacts(error="OperationalError: connection refused", cause="database"))
    for name in ("migrations", "admin"):
        assert judge(name, made).status == "fail", name
    assert "connection refused" in judge("migrations", made).reason
    # The budget falls back on the inventory's max_connections: over it still fails.
    assert judge("connection-budget", made).status == "fail"
    for found in made.hosts.values():
        found.env.values.update(SM_DB_POOL_SIZE="2", SM_DB_MAX_OVERFLOW="2")
    made.inventory.values.update(SM_DB_POOL_SIZE="2", SM_DB_MAX_OVERFLOW="2")
    fallback = judge("connection-budget", made)
    assert fallback.status == "warn" and "cannot read max_connections" in fallback.reason
    assert "from the inventory's db.max_connections" in fallback.reason


def test_no_admin_asks_for_the_apps_own_bootstrap_without_naming_any_app():
    made = facts()
    made.db = replace(made.db, admins=0)
    verdict = judge("admin", made)
    assert verdict.status == "fail" and verdict.reason == "no admin user exists"
    layout = made.layout
    assert f"on {made.db_host} as {layout.user} with {layout.env_file}" in verdict.fix
    assert "the password on stdin" in verdict.fix and "checks: skip: [admin]" in verdict.fix
    # smship knows no example app: the fix names only what the inventory declares.
    assert "refapp" not in verdict.fix and "reference app" not in verdict.fix


def test_budget_formula_and_suggestion():
    made = facts()
    numbers = checks.budget_numbers(made)
    # web1, web2: 2 uvicorn workers each; jobs1: 2 Celery processes + the beat (inventory.example);
    # and while a web batch rolls, its hosts' new slots run beside the serving ones; the workers' new
    # slots all at once beside theirs.
    batch = made.env.web.batch_count(2)
    assert numbers.rows[-2] == (f"new web slots (batch of {batch})", batch * made.env.web.workers, 30)
    assert numbers.rows[-1] == ("new worker slots (1 at once)", made.env.worker.concurrency, 30)
    assert numbers.processes == sum(p for _, p, _ in numbers.rows)
    assert numbers.demand == numbers.processes * 30 and numbers.limit == 97
    verdict = judge("connection-budget", made)
    assert verdict.status == "fail"
    pool, overflow = checks.suggest_pool(97, numbers.processes)
    assert (pool + overflow) * numbers.processes <= 97 * checks.HEADROOM
    assert f"SM_DB_POOL_SIZE: {pool} and SM_DB_MAX_OVERFLOW: {overflow}" in verdict.fix
    for found in made.hosts.values():
        found.env.values.update(SM_DB_POOL_SIZE=str(pool), SM_DB_MAX_OVERFLOW=str(overflow))
    made.inventory.values.update(SM_DB_POOL_SIZE=str(pool), SM_DB_MAX_OVERFLOW=str(overflow))
    assert judge("connection-budget", made).status == "pass"
    assert checks.suggest_pool(10, 9) is None


def with_pooler(made: Facts, **fields) -> Facts:
    from smship.inventory import Pooler

    db = made.env.db.model_copy(update={"pooler": Pooler(**fields)})
    made.ctx.env = made.env.model_copy(update={"db": db})
    return made


def test_budget_with_a_pooler_judges_clients_and_server_pool_apart():
    made = facts()
    numbers = checks.budget_numbers(made)
    assert numbers.demand > 97  # fails without the pooler ...
    plain = judge("connection-budget", made)
    pool, clients = checks.suggest_pooler(97, numbers.demand)
    assert (pool, clients) == (87, 1000)
    assert "db.pooler: {pool_size: 87, max_client_conn: 1000}" in plain.fix
    # ... and passes with it, naming both sides' numbers.
    verdict = judge("connection-budget", with_pooler(made))
    assert verdict.status == "pass", verdict
    assert (f"{numbers.demand} client connections at most" in verdict.reason
            and "max_client_conn 1000" in verdict.reason and "pool of 20 server connections for a limit of 97" in verdict.reason)
    # Each side fails on its own, with the number that fits.
    tight = judge("connection-budget", with_pooler(facts(), max_client_conn=numbers.demand - 1))
    assert tight.status == "fail" and f"raise db.pooler.max_client_conn to {clients}" in tight.fix
    greedy = judge("connection-budget", with_pooler(facts(), pool_size=95))
    assert greedy.status == "warn" and "lower db.pooler.pool_size to 87" in greedy.fix
    assert judge("connection-budget", with_pooler(facts(), pool_size=98)).status == "fail"


def test_a_fleet_that_outgrows_postgres_is_told_the_pooler_with_numbers():
    made = facts()
    made.db = replace(made.db, max_connections=20)
    verdict = judge("connection-budget", made)
    assert verdict.status == "fail"
    assert checks.suggest_pool(17, checks.budget_numbers(made).processes) is None
    assert verdict.fix.startswith("put PgBouncer in front of Postgres with db.pooler: {pool_size: 15, ")


def test_beat_counts_active_units_on_every_host():
    made = facts()
    assert judge("beat", made).status == "pass"
    change(made, "web1", beat="active")
    two = judge("beat", made)
    assert two.status == "fail" and "on web1" in two.fix
    for name in made.hosts:
        change(made, name, beat="inactive")
    assert judge("beat", made).status == "fail"


def test_sm010_and_proxy_headers_from_unit_facts():
    made = facts()
    web = made.layout.web_slot_service % "b"   # the agent answers for the serving slot's unit
    made.hosts["web1"].units[web] = unit("uvicorn main:app --fd 3", sm010="SM010 current=0001 head=0002")
    assert "web1 " + web in judge("sm010", made).reason
    change(made, "web1", nginx=SITE)
    made.hosts["web2"].units[web] = unit("uvicorn --proxy-headers")
    change(made, "web2", nginx=SITE)
    verdict = judge("proxy-headers", made)
    assert verdict.status == "fail" and "web1: " + web + " is not configured with --proxy-headers" in verdict.reason
    assert "web2" not in verdict.reason


def test_a_broken_check_fails_alone():
    def boom(facts):
        raise KeyError("x")
    verdict = Check("boom", "", boom).judge(None)
    assert verdict.status == "fail" and "KeyError" in verdict.reason


def test_skip_names_are_repeatable_or_comma_lists_and_must_exist():
    assert parse_skips(["tls,admin", "beat", "tls"], checks.NAMES) == ["tls", "admin", "beat"]
    assert parse_skips(None, checks.NAMES) == []
    with pytest.raises(SmshipError, match="no such check"):
        parse_skips(["tsl"], checks.NAMES)


SITE = """
# configuration file /etc/nginx/nginx.conf:
http {
    proxy_set_header X-Test 1;
    server { listen 80; server_name shop.example.com; location / { return 301 https://$host; } }
    server {
        listen 443 ssl http2;
        server_name shop.example.com;
        location /static/ { alias /var/www/shop/static/; }
        location / {
            proxy_pass http://shop_uvicorn;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;  # the scheme
        }
    }
}
"""


def test_nginx_site_forwarding_both_headers_passes():
    assert forwards_headers(SITE, "shop.example.com") is None


def test_nginx_location_missing_a_header_or_no_site_fails():
    missing = SITE.replace("proxy_set_header X-Forwarded-Proto $scheme;  # the scheme", "")
    assert forwards_headers(missing, "shop.example.com") == "location / does not set X-Forwarded-Proto"
    assert forwards_headers(SITE, "other.example.com") == "has no HTTPS server for other.example.com"


def test_nginx_headers_set_at_server_level_are_inherited_only_without_own():
    text = """server { listen 443 ssl; server_name a.example.com;
      proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Forwarded-For $remote_addr;
      location / { proxy_pass http://x; }
      location /api/ { proxy_pass http://x; proxy_set_header Host $host; } }"""
    assert forwards_headers(text, "a.example.com") == "location /api/ does not set X-Forwarded-Proto and X-Forwarded-For"


def certificate(names: list[str], days: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .sign(key, hashes.SHA256()))


def test_certificate_names_and_expiry():
    cert = certificate(["shop.example.com", "*.cdn.example.com"], 30)
    assert tls.names_of(cert) == ["shop.example.com", "*.cdn.example.com"]
    assert tls.name_matches(tls.names_of(cert), "SHOP.example.com")
    assert tls.name_matches(tls.names_of(cert), "a.cdn.example.com")
    assert not tls.name_matches(tls.names_of(cert), "a.b.cdn.example.com")
    assert not tls.name_matches(tls.names_of(cert), "example.com")
    assert 29 < tls.days_left(cert) < 30.1


def test_tls_verdict_from_a_served_certificate():
    from cryptography.hazmat.primitives.serialization import Encoding

    made = facts()
    good = certificate([made.env.domain], 90)
    made.served = {"web1": tls.Served(der=good.public_bytes(Encoding.DER), trusted=True)}
    made.configured_certificate = good.public_bytes(Encoding.PEM).decode()
    assert judge("tls", made).status == "pass"
    made.cert_days = 100
    assert "at least 100 wanted" in judge("tls", made).reason
    other = certificate(["other.example.com"], 90)
    made.served["web1"] = tls.Served(der=other.public_bytes(Encoding.DER), trusted=True)
    assert "is for other.example.com" in judge("tls", made).reason
    made.served["web1"] = tls.Served(error="203.0.113.11:443: refused")
    assert judge("tls", made).status == "fail"


def test_the_database_probe_answer_is_its_last_json_line():
    assert parse_probe('log line\n{"max_connections": 100}\n') == DatabaseFacts(max_connections=100)
    unreadable = parse_probe("Traceback ...")
    assert "no JSON" in unreadable.error and unreadable.cause == "probe"


def test_since_takes_short_durations_and_journalctl_times():
    assert since_argument("10m") == "-10m"
    assert since_argument("2h") == "-2h"
    assert since_argument("2026-01-31 12:00") == "2026-01-31 12:00"
    assert since_argument("today") == "today"


def test_journal_command_for_units_with_and_without_follow():
    plain = journal_command(["shop-web.service"], "10m", False, None)
    assert plain.argv == ("journalctl", "--no-pager", "--quiet", "-o", "cat", "-u", "shop-web.service",
                          "--since", "-10m") and plain.sudo
    follow = journal_command(["a.service", "b.service"], None, True, 10)
    assert follow.argv[:2] == ("sh", "-c") and follow.argv[-3:] == ("-n", "10", "-f")
    assert "-u" in follow.argv and "b.service" in follow.argv


def test_a_unit_pattern_that_never_logged_is_no_lines_rather_than_a_failure():
    # journalctl's own words (systemd 252 and 257) for -u 'shop-web@*.service' in a journal without it.
    assert no_unit_logged("Failed to add filter for units: No data available")
    assert not no_unit_logged("Failed to open files: Permission denied")
    assert not no_unit_logged("exit 1")


def test_log_prefix_keeps_the_line_whole():
    line = '{"message": "a | b"}'
    assert prefix("web1", 6, line) == 'web1   | {"message": "a | b"}'
    assert prefix("web1", 6, line).partition(" | ")[2] == line


def test_units_for_roles():
    layout = Layout(app="shop", user="shop", root="/srv/shop")
    assert units_of(layout, ["web", "worker"]) == ["shop-web@.service", "shop-worker@.service"]
    assert units_of(layout, ["web"], pattern=True, socket=True) == ["shop-web@*.socket", "shop-web@*.service"]
    assert units_of(layout, ["lb"]) == ["nginx.service"]


def test_stream_argv_has_no_tty_and_the_remote_line_last():
    endpoint = Endpoint(host="203.0.113.11", port=22, user="deploy")
    argv = stream_argv(endpoint, SSHOptions(known_hosts=None, ssh_config=None),
                       journal_command(["shop-web.service"], None, False, 5))
    assert "-T" in argv and argv[-2] == "203.0.113.11"
    assert argv[-1].startswith("sudo -n -H -- journalctl")


def with_lb_facts(tmp_path: Path) -> Facts:
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text())
    data["environments"]["prod"]["hosts"].append({"name": "lb1", "address": "203.0.113.5", "roles": ["lb"]})
    (tmp_path / "smship.yml").write_text(yaml.safe_dump(data))
    loaded = load(tmp_path / "smship.yml")
    env = loaded.environment("prod")
    made = Facts(SimpleNamespace(env=env, name="prod", app=loaded.app), Layout.of(loaded.app, env))
    site = "location / {\n if ($shop_drained) { return 421; }\n}\nif (!-f /var/www/shop/draining) {}\n"
    for host in env.hosts:
        made.hosts[host.name] = answer(nginx=site if "web" in host.roles else "error_page 421 = @shop_next_web_host;"
                                       if "lb" in host.roles else None)
    return made


def test_drain_passes_without_an_lb_and_when_every_nginx_takes_part(tmp_path):
    assert judge("drain", facts()).status == "pass"
    verdict = judge("drain", with_lb_facts(tmp_path))
    assert verdict.status == "pass" and "lb1" in verdict.reason, verdict


def test_drain_fails_on_an_nginx_provisioned_before_draining_moved_to_the_web_hosts(tmp_path):
    made = with_lb_facts(tmp_path)
    change(made, "web2", nginx="location / { proxy_pass http://shop_uvicorn; }")
    change(made, "lb1", nginx="location / { proxy_pass https://shop_fleet; }")
    verdict = judge("drain", made)
    assert verdict.status == "fail", verdict
    assert "web2: nginx does not turn the lb's requests away" in verdict.reason
    assert "lb1: nginx does not send a drained host's requests" in verdict.reason and "web1" not in verdict.reason
    assert "smship provision prod" in verdict.fix


def test_drain_warns_about_a_web_host_left_drained(tmp_path):
    made = with_lb_facts(tmp_path)
    change(made, "web1", drained=True)
    verdict = judge("drain", made)
    assert verdict.status == "warn" and verdict.reason.startswith("web1 drained from the load balancer"), verdict
    assert "/var/www/shop/draining" in verdict.fix


def test_a_budget_the_inventory_already_fixed_asks_for_provisioning_not_for_new_values():
    made = facts()
    made.inventory.values.update(SM_DB_POOL_SIZE="2", SM_DB_MAX_OVERFLOW="2")
    for found in made.hosts.values():
        found.env.values.update(SM_DB_POOL_SIZE="50", SM_DB_MAX_OVERFLOW="5")
    made.hosts["web1"].env.values.update(SM_DB_POOL_SIZE="2", SM_DB_MAX_OVERFLOW="2")
    for preflight in (False, True):
        verdict = judge("connection-budget", made, preflight=preflight)
        # The app runs on the env files until provisioning rewrites them: still refused, for the right reason.
        assert verdict.status == "fail", verdict
        assert "the inventory's pool sizes fit" in verdict.reason and "env files of web2, jobs1" in verdict.reason
        assert "set SM_DB_POOL_SIZE" not in verdict.fix and "smship provision prod" in verdict.fix, verdict.fix


def test_a_deploy_that_rewrites_the_stale_env_files_is_judged_on_the_inventorys_pool_sizes():
    made = facts()
    made.inventory.values.update(SM_DB_POOL_SIZE="2", SM_DB_MAX_OVERFLOW="2")
    for found in made.hosts.values():
        found.env.values.update(SM_DB_POOL_SIZE="50", SM_DB_MAX_OVERFLOW="5")
    made.rewritten = {"web1", "web2", "jobs1"}     # deploy writes their env files before restarting them
    verdict = judge("connection-budget", made, preflight=True)
    assert verdict.status == "pass", verdict
    assert "web1 2x4 + web2 2x4 + jobs1 3x4" in verdict.reason, verdict.reason
    made.rewritten = {"web1", "web2"}              # --limit web: jobs1 keeps its env file and its pools
    verdict = judge("connection-budget", made, preflight=True)
    assert verdict.status == "fail" and "env files of jobs1" in verdict.reason, verdict


def test_the_database_probe_asked_early_is_kept_only_from_the_host_it_would_be_asked_on():
    from smship.checklist.facts import probe_early, read_database
    from smship.ssh import Result

    class Fleet:
        def __init__(self, names):
            self.targets = {name: SimpleNamespace(name=name) for name in names}
            self.ran = []

        def run(self, host, command, timeout=None):
            self.ran.append((host, next(w for w in command.argv if w.startswith("WorkingDirectory="))))
            return Result(host, "probe", 0, stdout='{"max_connections": 100}\n')

    made = facts(db=None, db_host=None)
    web = [h.name for h in made.env.hosts if "web" in h.roles]
    fleet = Fleet(made.hosts)
    early = probe_early(made, fleet)
    # The first web host, on whatever release is live there: asked before the hosts said which.
    assert early[0] == web[0] and fleet.ran == [(web[0], "WorkingDirectory=/srv/shop/current/host")]
    read_database(made, fleet, early)
    assert (made.db_host, made.db.max_connections, len(fleet.ran)) == (web[0], 100, 1)

    # That host runs no release: the probe is asked again where one is live, on that release.
    change(made, web[0], current=None)
    fleet.ran.clear()
    read_database(made, fleet, early)
    assert made.db_host == web[1] and fleet.ran == [(web[1], "WorkingDirectory=/srv/shop/releases/r2/host")]
