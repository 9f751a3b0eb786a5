"""Roles render into desired state, and plans change exactly what differs."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from smship.context import EnvContext
from smship.hostos import HostOS
from smship.hostroles import WORKER_KILL_MODE, ready_lines
from smship.layout import Layout
from smship.engine.plan import apply_request, facts_request, plan
from smship.engine.resources import WebSlotRestart, WorkerSlotRestart
from smship.engine.roles import RoleError, desired_state
from smship.engine.variables import host_variables, roles_of
from smship.remote.agent import key_fingerprint
from smship.templating import environment

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"SM_SECRET_KEY": "k" * 64, "SM_DB_PASSWORD": "db'pass", "SM_REDIS_PASSWORD": "redispass",
           "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-example",
           "SMSHIP_UPSTREAM_CA_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"}


@pytest.fixture
def project(tmp_path):
    """The example inventory with TLS files that exist, in a project folder."""
    (tmp_path / "cert.pem").write_text("CERT\n")
    (tmp_path / "key.pem").write_text("KEY\n")
    text = (ROOT / "inventory.example").read_text()
    text = text.replace("~/certs/shop.example.com.fullchain.pem", str(tmp_path / "cert.pem"))
    text = text.replace("~/certs/shop.example.com.key", str(tmp_path / "key.pem"))
    (tmp_path / "smship.yml").write_text(text)
    return tmp_path


# What a bare Debian 12 and a bare Debian 13 host say (agent's hostos answer).
BOOKWORM = HostOS("h", "debian", "12", "bookworm", "Debian GNU/Linux 12 (bookworm)", glibc="2.36",
                  python_version="3.11.2", candidates={"postgresql": "15+248", "nginx": "1.22.1-9"})
TRIXIE = HostOS("h", "debian", "13", "trixie", "Debian GNU/Linux 13 (trixie)", glibc="2.41",
                python_version="3.13.5", candidates={"postgresql": "17+278", "nginx": "1.26.3-3+deb13u1"})


def state_for(project: Path, host_name: str, facts: HostOS = BOOKWORM):
    ctx = EnvContext.open("prod", project / "smship.yml")
    host = next(h for h in ctx.env.hosts if h.name == host_name)
    return desired_state(roles_of(ctx.env, host), host_variables(ctx, host, SECRETS, facts), project, environment(project))


def converged_facts(state) -> dict:
    """Facts of a host on which ``state`` was already applied."""
    paths = {}
    for f in state.files:
        paths[f.path] = {"type": "file", "sha256": hashlib.sha256(f.content).hexdigest(),
                         "owner": f.owner, "group": f.group, "mode": f.mode}
    for d in state.directories:
        paths[d.path] = {"type": "dir", "owner": d.owner, "group": d.group, "mode": d.mode}
    for link in state.links:
        paths[link.path] = {"type": "link", "target": link.target}
    for gone in state.absent:
        paths[gone.path] = {"type": "absent"}
    return {"packages": {p: True for p in state.packages}, "users": {u.name: {"uid": 999} for u in state.users},
            "paths": paths, "checks": {e.name: True for e in state.ensures},
            "services": {s.name: {"enabled": "enabled", "active": "active"} for s in state.services}}


def fresh_facts(state) -> dict:
    request = facts_request(state).fields
    return {"packages": {}, "users": {}, "paths": {p: {"type": "absent"} for p in request["paths"]},
            "checks": {}, "services": {s: {"enabled": "not-found", "active": "inactive"} for s in request["services"]}}


def planned(state, facts: dict):
    """The plan for ``facts`` written as the agent answers them."""
    return plan(state, facts_request(state).parse("h", facts))


def file_text(state, suffix: str) -> str:
    return next(f.content.decode() for f in state.files if f.path.endswith(suffix))


def test_web_host_units_and_nginx_follow_the_framework_guide(project):
    state = state_for(project, "web1")
    assert state.roles == ["base", "firewall", "app", "web"]
    service = file_text(state, "shop-web@.service")
    # Only root and nginx may connect to a slot's socket: every peer is trusted, and nginx sends one address.
    assert "--fd 3 --workers 2 --proxy-headers --forwarded-allow-ips * " in service
    assert "WorkingDirectory=/var/www/shop/web/slot-%i" in service and "Requires=shop-web@%i.socket" in service
    assert "ProtectSystem=strict" in service and "NoNewPrivileges=yes" in service
    assert "ReadWritePaths=/srv/shop/shared/uploads /srv/shop/shared/logs" in service
    socket = file_text(state, "shop-web@.socket")
    assert "ListenStream=/run/shop-web/%i.sock" in socket
    assert "SocketGroup=www-data" in socket and "SocketMode=0660" in socket
    site = file_text(state, "sites-available/shop.conf")
    for line in ("proxy_set_header X-Forwarded-For $remote_addr;",
                 "proxy_set_header X-Forwarded-Proto $scheme;", "expires 1y;",
                 'add_header Cache-Control "public, immutable";', "proxy_cookie_flags ~ secure;",
                 "return 301 https://$host$request_uri;", "server_name shop.example.com;"):
        assert line in site, line
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in file_text(state, "smship-tls.conf")
    key = next(f for f in state.files if f.path == "/etc/ssl/smship/shop.key")
    assert key.secret and key.mode == "0600" and key.content == b"KEY\n"


def test_env_file_is_secret_and_carries_settings(project):
    state = state_for(project, "web1")
    env_file = next(f for f in state.files if f.path == "/srv/shop/shared/env")
    assert env_file.secret and env_file.mode == "0600" and env_file.owner == "root"
    text = env_file.content.decode()
    assert f"SM_SECRET_KEY={'k' * 64}" in text
    assert "SM_DATABASE_URL=postgresql+asyncpg://shop:db%27pass@db1.internal.example.com:5432/shop" in text
    assert "SM_LOG_FORMAT=json" in text and "SM_ENVIRONMENT=production" in text


def test_worker_and_beat_units(project):
    state = state_for(project, "jobs1")
    assert state.roles == ["base", "firewall", "app", "worker", "beat"]
    worker = file_text(state, "shop-worker@.service")
    assert "Environment=SM_MODULES_ENABLED=background_tasks,uploads" in worker
    assert "TimeoutStopSec=600" in worker and "--concurrency 2" in worker
    # The warm shutdown's SIGTERM reaches the main process alone, not the pool children running tasks.
    assert "\nKillSignal=SIGTERM\n" in worker and f"\nKillMode={WORKER_KILL_MODE}\n" in worker
    assert "celery -A scripts.run_worker:celery beat" in file_text(state, "shop-beat.service")
    # The line the watch after a restart waits for names the worker as its unit does.
    layout = EnvContext.open("prod", project / "smship.yml").layout
    ready = ready_lines(layout, state.roles, "jobs1")
    assert " --hostname shop@jobs1\n" in worker and ready["shop-worker@.service"] == "shop@jobs1 ready."
    assert ready["shop-beat.service"] == "beat: Starting..." and "--loglevel INFO" in worker
    # The worker runs from its slot's link (%i: the slot), the beat from the worker and beat's own link,
    # which the host keeps; a host without them has none.
    assert "WorkingDirectory=/srv/shop/worker/slot-%i\n" in worker and "ExecStart=/srv/shop/worker/slot-%i/.venv/" in worker
    assert "WorkingDirectory=/srv/shop/background\n" in file_text(state, "shop-beat.service")
    link = "no worker and beat release link (neither runs here)"
    assert link not in [e.name for e in state.ensures]
    assert "the worker and beat's release link" in [e.name for e in state.ensures]
    web_only = state_for(project, "web1")
    assert link in [e.name for e in web_only.ensures]
    assert "the worker and beat's release link" not in [e.name for e in web_only.ensures]


def test_db_host_gets_postgres_and_redis_with_secrets_kept_secret(project):
    state = state_for(project, "db1")
    assert "postgresql-15" in state.packages and "redis-server" in state.packages
    hba = file_text(state, "pg_hba.conf")
    assert "host    shop  shop  203.0.113.11/32  scram-sha-256" in hba
    names = [e.name for e in state.ensures]
    # The role first, then its password, then the database it owns.
    assert names.index("postgres role shop") < names.index("postgres role shop has the password SM_DB_PASSWORD") \
        < names.index("postgres database shop")
    password = next(e for e in state.ensures if e.name == "postgres role shop has the password SM_DB_PASSWORD")
    fingerprint = key_fingerprint("SM_DB_PASSWORD", "db'pass")
    mark, sql = password.stdin.decode().split("\n", 1)
    # Postgres is given a SCRAM verifier, never the password; SQL names the role through psql variables.
    assert mark == fingerprint and "db'pass" not in sql and "db''pass" not in sql
    assert re.fullmatch(r"\\set verifier 'SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+'\n"
                        r"ALTER ROLE :\"role\" PASSWORD :'verifier';\n", sql), sql
    for ensure in state.ensures:
        words = " ".join(ensure.apply + ensure.check)
        assert "db'pass" not in words and fingerprint not in words, ensure
    # The host compares the fingerprint of the password it last set, read from stdin.
    assert password.check[-1] == "/var/lib/smship/shop-db-password.fingerprint", password.check
    assert password.check_stdin == f"{fingerprint}\n".encode()
    assert password.apply[-2:] == (password.check[-1], "shop")
    assert next(f for f in state.files if f.path == "/etc/redis/redis.conf").secret


def test_db_host_with_backups_archives_wal_through_pgbackrest(project):
    state = state_for(project, "db1")
    assert "pgbackrest" in state.packages
    conf = next(f for f in state.files if f.path == "/etc/pgbackrest/pgbackrest.conf")
    assert conf.secret and conf.mode == "0640" and conf.owner == "postgres"
    text = conf.content.decode()
    assert "repo1-s3-bucket=shop-prod-backups" in text and "repo1-s3-endpoint=s3.eu-west-1.amazonaws.com" in text
    assert "repo1-path=/pgbackrest/prod" in text and "repo1-retention-full=4" in text
    assert "repo1-s3-key-secret=s3cr3t-example" in text and "[shop]" in text
    archive = file_text(state, "conf.d/smship-archive.conf")
    assert "archive_mode = on" in archive and "pgbackrest --stanza=shop archive-push %p" in archive
    # archive_mode waits for `provision --restart-db`: the file only reloads Postgres.
    assert next(f for f in state.files if f.path.endswith("smship-archive.conf")).notify == ("reload postgresql",)
    assert "OnCalendar=Sun *-*-* 03:00:00" in file_text(state, "shop-backup.timer")
    assert "--stanza=shop --type=full backup" in file_text(state, "shop-backup.service")
    assert any(e.name == "pgBackRest stanza shop" for e in state.ensures)
    assert "s3cr3t-example" not in " ".join(" ".join(e.apply + e.check) for e in state.ensures)


def test_db_host_without_backups_has_no_archiving(project):
    data = yaml.safe_load((project / "smship.yml").read_text())
    data["environments"]["prod"].pop("backup")
    (project / "smship.yml").write_text(yaml.safe_dump(data))
    state = state_for(project, "db1")
    assert "pgbackrest" not in state.packages
    assert not any("pgbackrest" in f.path or "backup" in f.path for f in state.files)
    assert [a.path for a in state.absent] == ["/etc/postgresql/15/main/conf.d/smship-archive.conf"]
    assert not any("stanza" in e.name for e in state.ensures)


def test_app_hosts_get_the_s3_settings_in_their_env_file(project):
    env_file = file_text(state_for(project, "web1"), "/srv/shop/shared/env")
    assert "SM_FILE_STORAGE_BACKEND=s3" in env_file and "SM_S3_BUCKET=shop-prod-uploads" in env_file
    assert "SM_S3_REGION=eu-west-1" in env_file and "AWS_SECRET_ACCESS_KEY=s3cr3t-example" in env_file
    assert "SM_S3_ENDPOINT_URL" not in env_file and "AWS_CA_BUNDLE" not in env_file
    assert not any(f.path.endswith("pgbackrest.conf") for f in state_for(project, "web1").files)


def test_fresh_host_plans_everything_and_converged_host_nothing(project):
    state = state_for(project, "web1")
    fresh = planned(state, fresh_facts(state))
    assert fresh.packages == state.packages
    kinds = {c.kind for c in fresh.changes}
    assert {"user", "directory", "file", "link", "service"} <= kinds
    assert fresh.handlers[0] == "daemon-reload"
    assert planned(state, converged_facts(state)).empty


def test_one_changed_template_changes_one_file_and_notifies_its_handlers(project):
    state = state_for(project, "web1")
    facts = converged_facts(state)
    site = "/etc/nginx/sites-available/shop.conf"
    old = file_text(state, "sites-available/shop.conf").replace("expires 1y;", "expires 1d;")
    facts["paths"][site].update(sha256="0" * 64, content=old)
    p = planned(state, facts)
    assert [c.target for c in p.changes] == [site]
    assert "-        expires 1d;\n+        expires 1y;\n" in p.changes[0].diff
    assert p.handlers == ["reload nginx"] and not p.restarts_web_slots
    actions = apply_request(state, p).fields["actions"]
    assert [a["kind"] for a in actions] == ["file", "command", "command"]
    assert actions[1]["argv"] == ["nginx", "-t", "-q"]


def test_handlers_owed_by_an_interrupted_run_still_run(project):
    state = state_for(project, "web1")
    facts = converged_facts(state)
    facts["pending_handlers"] = ["restart app units", "not a handler of this host"]
    p = planned(state, facts)
    assert not p.empty and p.changes == []
    assert p.handlers == ["restart app units"]
    request = apply_request(state, p).fields
    assert request["handlers"] == ["restart app units"]
    # web1 plays web only: the shared handler restarts its web tier alone, through its slots.
    assert [a["kind"] for a in request["actions"]] == ["web slots"]


def test_a_changed_env_file_restarts_the_web_tier_and_the_worker_through_their_slots_once_and_beat_in_place(project):
    text = (project / "smship.yml").read_text()
    text = text.replace("        roles: [web]\n", "        roles: [web, worker]\n", 1)
    (project / "smship.yml").write_text(text.replace("      timeout: 60\n", "      timeout: 45.5\n"))
    state = state_for(project, "web1")
    facts = converged_facts(state)
    facts["paths"]["/srv/shop/shared/env"]["sha256"] = "0" * 64
    # The unit template changed too: its own restart and the env file's are one switch.
    facts["paths"]["/etc/systemd/system/shop-web@.service"]["sha256"] = "0" * 64
    p = planned(state, facts)
    assert "restart web" in p.handlers and "restart app units" in p.handlers and p.restarts_web_slots
    actions = apply_request(state, p).fields["actions"]
    switches = [a for a in actions if a["kind"] == "web slots"]
    assert len(switches) == 1, actions
    [switch] = switches
    assert switch["root"] == "/srv/shop" and switch["web"] == Layout(app="shop", user="shop", root="/srv/shop").web_slots()
    # The gate a deploy uses: the inventory's health settings, asked as nginx asks for the domain.
    health = switch["health"]
    assert (health["host"], health["timeout"], health["unit"]) == ("shop.example.com", 45.5, "shop-web@.service")
    assert health["ready"]["path"] == "/health/ready" and health["live"]["path"] == "/health/live"
    # The worker too, once, through its slots: the same Layout.worker_slots a deploy hands the agent.
    [worker] = [a for a in actions if a["kind"] == "worker slots"]
    assert worker["worker"] == Layout(app="shop", user="shop", root="/srv/shop").worker_slots(600)
    assert worker["ready"] == "shop@web1 ready."
    commands = [a["argv"] for a in actions if a["kind"] == "command"]
    assert not any(word.startswith(("shop-web@", "shop-worker@")) for argv in commands for word in argv
                   if "try-restart" in argv or "restart" in argv)
    # jobs1 has no web tier: its worker switches slots, its beat restarts in place.
    jobs = state_for(project, "jobs1")
    assert not any(isinstance(step, WebSlotRestart) for steps in jobs.handlers.values() for step in steps)
    [step] = jobs.handlers["restart worker"]
    assert isinstance(step, WorkerSlotRestart) and step.ready == "shop@jobs1 ready."


def test_a_role_s_handler_step_is_a_command_or_a_restart_through_the_web_or_worker_slots(project):
    (project / "roles").mkdir()
    (project / "roles" / "worker.yml").write_text("handlers:\n  restart worker:\n    - {web slots: reload}\n")
    with pytest.raises(RoleError, match="a command \\(a list\\), {web slots: restart} or {worker slots: restart}"):
        state_for(project, "jobs1")


def test_secret_file_changes_are_never_diffed(project):
    state = state_for(project, "web1")
    facts = converged_facts(state)
    facts["paths"]["/srv/shop/shared/env"]["sha256"] = "0" * 64
    (change,) = planned(state, facts).changes
    assert change.diff is None and change.summary == "content (secret: not shown)"
    assert facts_request(state).fields["paths"]["/srv/shop/shared/env"] is None


def test_mode_drift_is_repaired(project):
    state = state_for(project, "web1")
    facts = converged_facts(state)
    facts["paths"]["/srv/shop/shared/env"]["mode"] = "0644"
    (change,) = planned(state, facts).changes
    assert change.summary == "mode 0644 -> 0600"


def test_project_templates_override_builtin_ones(project):
    (project / "templates").mkdir()
    (project / "templates" / "nginx-tls.conf.j2").write_text("ssl_protocols TLSv1.3;\n")
    assert file_text(state_for(project, "web1"), "smship-tls.conf") == "ssl_protocols TLSv1.3;\n"


def test_a_role_notifying_an_unknown_handler_is_refused(project):
    (project / "roles").mkdir()
    shutil.copy(ROOT / "roles" / "base.yml", project / "roles" / "base.yml")
    with open(project / "roles" / "base.yml", "a") as handle:
        handle.write("files:\n  - {path: /etc/motd, content: hi, notify: [reboot everything]}\n")
    with pytest.raises(RoleError, match="notify handler 'reboot everything', which no role declares"):
        state_for(project, "web1")


def test_a_host_removes_the_units_of_roles_it_does_not_play(project):
    state = state_for(project, "web1")
    names = {e.name for e in state.ensures}
    assert {"no worker unit (not a worker host)", "no beat unit (not the beat host)"} <= names
    assert "no web units (not a web host)" not in names
    facts = converged_facts(state)
    facts["checks"]["no beat unit (not the beat host)"] = False       # a beat unit is still there
    (change,) = planned(state, facts).changes
    assert change.kind == "ensure" and change.target == "no beat unit (not the beat host)"
    assert change.action["argv"][-1] == "shop-beat.service"


def with_an_lb(project: Path) -> Path:
    data = yaml.safe_load((project / "smship.yml").read_text())
    data["environments"]["prod"]["hosts"].append({"name": "lb1", "address": "203.0.113.5", "roles": ["lb"]})
    (project / "smship.yml").write_text(yaml.safe_dump(data))
    return project


def test_without_an_lb_a_web_host_has_nothing_to_drain(project):
    site = file_text(state_for(project, "web1"), "sites-available/shop.conf")
    assert "draining" not in site and "421" not in site and "X-Smship-Lb" not in site
    # No connection to uvicorn is kept alive (a restarting uvicorn closes idle ones under nginx's requests).
    upstream = site[site.index("upstream shop_uvicorn {"):]
    assert "keepalive" not in upstream[:upstream.index("}")]
    assert 'proxy_set_header Connection "close";' in site and 'proxy_set_header Connection "";' not in site
    # A GET whose fresh connection a stopping uvicorn closed is tried once more, on the same uvicorn,
    # which is never marked down; a POST is not (nginx never repeats a non-idempotent request).
    entries = [line.strip() for line in upstream[:upstream.index("}")].splitlines()[1:] if line.strip()]
    assert entries == ["server unix:/var/www/shop/web/uvicorn.sock max_fails=0;"] * 2, entries
    assert "proxy_next_upstream error;" in site and "proxy_next_upstream_tries 2;" in site
    assert "non_idempotent" not in site


def test_a_drained_web_host_turns_the_lbs_requests_away_and_the_lb_tries_another(project):
    with_an_lb(project)
    site = file_text(state_for(project, "web1"), "sites-available/shop.conf")
    assert "set $shop_drained $http_x_smship_lb;" in site and "if (!-f /var/www/shop/draining) {" in site
    assert "if ($shop_drained) {\n            return 421;" in site
    # The app never sees the lb's marker.
    assert 'proxy_set_header X-Smship-Lb "";' in site
    lb_state = state_for(project, "lb1")
    lb = file_text(lb_state, "sites-available/shop-lb.conf")
    assert "proxy_set_header X-Smship-Lb lb1;" in lb
    # Only 421 is intercepted, in both locations: every other status reaches the client as is.
    assert re.findall(r"error_page (\S+) = @shop_next_web_host;", lb) == ["421", "421"]
    assert len(re.findall(r"error_page ", lb)) == 2 and "recursive_error_pages on;" in lb
    upstream = file_text(lb_state, "shop-upstream.conf")
    assert "server 203.0.113.11:443 max_fails=2" in upstream and "server 203.0.113.12:443" in upstream
    assert " down" not in upstream


def test_the_hosts_postgres_major_decides_package_and_paths(project):
    for facts, major in ((BOOKWORM, 15), (TRIXIE, 17)):
        state = state_for(project, "db1", facts)
        assert f"postgresql-{major}" in state.packages
        assert f"/etc/postgresql/{major}/main/pg_hba.conf" in [f.path for f in state.files]
    # A cluster already on the host wins over what apt would install now (no surprise major upgrade).
    upgraded = dataclasses.replace(TRIXIE, postgres_clusters=(15,), postgres_installed=(15, 17))
    assert "postgresql-15" in state_for(project, "db1", upgraded).packages


def test_the_inventorys_postgres_version_overrides_the_host(project):
    text = (project / "smship.yml").read_text()
    (project / "smship.yml").write_text(text.replace("    db:\n", "    db:\n      postgres_version: 16\n", 1))
    assert "postgres_version: 16" in (project / "smship.yml").read_text()
    assert "postgresql-16" in state_for(project, "db1", TRIXIE).packages


def test_nginx_http2_follows_the_hosts_nginx(project):
    old = file_text(state_for(project, "web1", BOOKWORM), "sites-available/shop.conf")
    new = file_text(state_for(project, "web1", TRIXIE), "sites-available/shop.conf")
    assert "listen 443 ssl http2;" in old and "http2 on;" not in old
    assert "listen 443 ssl;" in new and "http2 on;" in new and "listen 443 ssl http2;" not in new
    with_an_lb(project)
    assert "http2 on;" in file_text(state_for(project, "lb1", TRIXIE), "sites-available/shop-lb.conf")
    assert "listen 443 ssl http2;" in file_text(state_for(project, "lb1", BOOKWORM), "sites-available/shop-lb.conf")


def test_app_python_version_installs_that_interpreter(project):
    assert {"python3", "python3-venv"} <= set(state_for(project, "web1").packages)
    text = (project / "smship.yml").read_text()
    (project / "smship.yml").write_text(text.replace("app:\n", "app:\n  python: '3.13'\n", 1))
    packages = state_for(project, "web1", TRIXIE).packages
    assert {"python3.13", "python3.13-venv"} <= set(packages) and "python3-venv" not in packages


def test_the_handover_to_web_slots_waits_in_whole_seconds_and_leaves_a_slot_host_alone(project, tmp_path):
    text = (project / "smship.yml").read_text().replace("      timeout: 60\n", "      timeout: 45.5\n")
    (project / "smship.yml").write_text(text)
    state = state_for(project, "web1")
    [handover] = state.handlers["hand over to a web slot"]
    shell, flag, script, name, current, web_state, unit, socket_path, timeout = handover
    assert (shell, flag, name, unit, timeout) == ("sh", "-c", "sh", "shop-web@a.service", "46")
    assert (current, web_state, socket_path) == ("/srv/shop/current", "/var/www/shop/web", "/run/shop-web/a.sock")

    def handover_on(current: Path, web: Path) -> subprocess.CompletedProcess:
        return subprocess.run([shell, flag, script, name, str(current), str(web), unit, socket_path, timeout],
                              capture_output=True, text=True, timeout=30)

    web = tmp_path / "web"
    web.mkdir()
    # Nothing deployed yet: the first deploy starts a slot.
    nothing = handover_on(tmp_path / "current", web)
    assert (nothing.returncode, nothing.stderr) == (0, "")
    # A host that serves from a slot already: nothing to hand over.
    (tmp_path / "current").symlink_to(tmp_path)
    (web / "uvicorn.sock").symlink_to("/run/shop-web/b.sock")
    served = handover_on(tmp_path / "current", web)
    assert (served.returncode, served.stderr) == (0, "")
    assert sorted(p.name for p in web.iterdir()) == ["uvicorn.sock"]


def with_pooler(project: Path, pooler) -> None:
    data = yaml.safe_load((project / "smship.yml").read_text())
    data["environments"]["prod"]["db"]["pooler"] = pooler
    (project / "smship.yml").write_text(yaml.safe_dump(data))


TRIXIE_POOLER = dataclasses.replace(TRIXIE, candidates={**TRIXIE.candidates, "pgbouncer": "1.24.1-1+deb13u2"})


def test_a_pooler_puts_pgbouncer_between_the_app_and_postgres(project):
    with_pooler(project, {"pool_size": 30, "max_client_conn": 500})
    state = state_for(project, "db1", TRIXIE_POOLER)
    assert "pgbouncer" in state.packages and ("pgbouncer", True, True) in [
        (s.name, s.enabled, s.running) for s in state.services]
    assert not any(e.name.startswith("no PgBouncer") for e in state.ensures)
    ini = next(f for f in state.files if f.path == "/etc/pgbouncer/pgbouncer.ini")
    # Root's, readable by the postgres user PgBouncer runs as, and never by the app.
    assert (ini.owner, ini.group, ini.mode) == ("root", "postgres", "0640")
    text = ini.content.decode()
    assert "shop = host=/var/run/postgresql port=5432 dbname=shop\n" in text
    assert "listen_addr = 127.0.0.1,db1.internal.example.com\n" in text and "listen_port = 6432\n" in text
    assert "pool_mode = transaction\n" in text and "default_pool_size = 30\n" in text
    assert "max_client_conn = 500\n" in text and "max_prepared_statements = 200\n" in text
    settings = [line for line in text.splitlines() if not line.startswith(";")]
    assert "auth_type = hba" in settings and not any("user=" in line or "password" in line for line in settings)
    hba = file_text(state, "/etc/pgbouncer/pg_hba.conf")
    assert "host    shop  shop  203.0.113.11/32  scram-sha-256" in hba and "local   pgbouncer  postgres" in hba
    # Postgres lets the postgres OS user in as the app's role over its socket, and no one else as anyone else.
    assert "local   shop  shop  peer map=smship-pooler" in file_text(state, "/etc/postgresql/17/main/pg_hba.conf")
    ident = file_text(state, "/etc/postgresql/17/main/pg_ident.conf")
    assert "smship-pooler    postgres         shop" in ident
    assert "LimitNOFILE=658" in file_text(state, "pgbouncer.service.d/smship.conf")
    # The auth file holds a SCRAM verifier of SM_DB_PASSWORD, written on stdin after its fingerprint.
    [auth] = [e for e in state.ensures if e.name == "PgBouncer knows the password SM_DB_PASSWORD of shop"]
    mark, line = auth.stdin.decode().split("\n", 1)
    assert mark == key_fingerprint("SM_DB_PASSWORD", "db'pass") and "db'pass" not in line
    assert re.fullmatch(r'"shop" "SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+"\n'
                        r'"postgres" ""\n', line), line
    assert auth.check[-2:] == ("/var/lib/smship/shop-pooler-password.fingerprint", "/etc/pgbouncer/userlist.txt")
    names = [e.name for e in state.ensures]
    assert names.index("postgres role shop has the password SM_DB_PASSWORD") < names.index(auth.name)


def test_with_a_pooler_the_app_goes_through_it_and_the_release_steps_do_not(project):
    with_pooler(project, "pgbouncer")
    web = state_for(project, "web1", TRIXIE_POOLER)
    assert "SM_DATABASE_URL=postgresql+asyncpg://shop:db%27pass@db1.internal.example.com:6432/shop\n" in file_text(
        web, "/srv/shop/shared/env")
    direct = next(f for f in web.files if f.path == "/srv/shop/shared/env.direct")
    assert direct.secret and (direct.owner, direct.mode) == ("root", "0600")
    lines = [line for line in direct.content.decode().splitlines() if not line.startswith("#")]
    assert lines == ["SM_DATABASE_URL=postgresql+asyncpg://shop:db%27pass@db1.internal.example.com:5432/shop"]
    assert "/srv/shop/shared/env.direct" not in [a.path for a in web.absent]
    # The firewall admits the app hosts to PgBouncer's port as to Postgres'.
    assert "tcp dport { 5432, 6432, 6379 }" in file_text(state_for(project, "db1", TRIXIE_POOLER), "firewall.nft")


def test_without_a_pooler_nothing_of_it_is_rendered_and_the_release_steps_file_goes(project):
    web, db = state_for(project, "web1", TRIXIE), state_for(project, "db1", TRIXIE)
    assert "@db1.internal.example.com:5432/shop" in file_text(web, "/srv/shop/shared/env")
    assert "/srv/shop/shared/env.direct" in [a.path for a in web.absent]
    assert "pgbouncer" not in db.packages and not any("pgbouncer" in f.path or "pg_ident" in f.path for f in db.files)
    assert "map=smship-pooler" not in file_text(db, "pg_hba.conf")
    # A PgBouncer smship set up before is stopped and its verifier removed; one it never set up is left.
    from smship.provision.provision import POOLER_RETIREMENT
    undo = next(e for e in db.ensures if e.name.startswith(POOLER_RETIREMENT))
    assert undo.check[-2:] == ("/etc/systemd/system/pgbouncer.service.d/smship.conf",
                               "/var/lib/smship/shop-pooler-password.fingerprint")
    assert "disable --now pgbouncer" in undo.apply[2] and "/etc/pgbouncer/userlist.txt" in undo.apply[2]


def test_transaction_pooling_needs_a_pgbouncer_that_keeps_prepared_statements_apart(project):
    from smship import hostos
    from smship.errors import SmshipError

    with_pooler(project, "pgbouncer")
    env = EnvContext.open("prod", project / "smship.yml").env
    old = dataclasses.replace(BOOKWORM, host="db1", candidates={**BOOKWORM.candidates, "pgbouncer": "1.18.0-1+deb12u1"})
    with pytest.raises(SmshipError, match=r"db1 \(Debian GNU/Linux 12 \(bookworm\)\) offers PgBouncer 1\.18\.0.*"
                                          r"Nothing was changed.*pool_mode: session"):
        hostos.require_pooler_available(env, {"db1": old})
    hostos.require_pooler_available(env, {"db1": dataclasses.replace(TRIXIE_POOLER, host="db1")})
    with pytest.raises(SmshipError, match="offers no pgbouncer package"):
        hostos.require_pooler_available(env, {"db1": dataclasses.replace(BOOKWORM, host="db1")})
    with_pooler(project, {"pool_mode": "session"})
    env = EnvContext.open("prod", project / "smship.yml").env
    hostos.require_pooler_available(env, {"db1": old})
    assert "max_prepared_statements" not in file_text(state_for(project, "db1", old), "pgbouncer.ini")


def test_the_db_host_goes_first_when_a_running_apps_env_file_changes_with_it():
    from types import SimpleNamespace

    from smship.engine.plan import Change, Plan
    from smship.provision.provision import HostOutcome, in_waves, provision_waves
    from smship.ssh import FleetResult

    env_file = "/srv/shop/shared/env"
    roles = {"db1": ["db"], "web1": ["web"], "jobs1": ["worker", "beat"]}
    targets = [SimpleNamespace(name=name) for name in roles]

    def looked(**changes: list[Change]) -> FleetResult:
        return FleetResult({name: HostOutcome(Plan(changes=changes.get(name, [])), False) for name in roles})

    rewritten = Change("file", env_file, "content (secret: not shown)")
    password = Change("ensure", "postgres role shop has the password SM_DB_PASSWORD", "apply")
    waves = provision_waves(targets, roles, looked(db1=[password], web1=[rewritten]), env_file)
    assert [[t.name for t in wave.targets] for wave in waves] == [["db1"], ["web1", "jobs1"]]
    # A fresh app host (its env file created), a db host with nothing to do, or no env file change: all at once.
    for plans in ({"db1": [password], "web1": [Change("file", env_file, "create")]}, {"web1": [rewritten]},
                  {"db1": [password], "jobs1": [Change("file", "/etc/x", "content")]}):
        assert [[t.name for t in w.targets] for w in provision_waves(targets, roles, looked(**plans), env_file)] == [
            ["db1", "web1", "jobs1"]]
    assert [w.targets for w in provision_waves(targets, roles, None, env_file)] == [targets]
    # The pooler taken out: the app hosts move to Postgres' own port first, then PgBouncer stops.
    retired = Change("ensure", "no PgBouncer of smship's (db.pooler is unset)", "apply")
    after = provision_waves(targets, roles, looked(db1=[retired], web1=[rewritten]), env_file)
    assert [[t.name for t in wave.targets] for wave in after] == [["web1", "jobs1"], ["db1"]]
    assert "no app host uses" in after[1].after
    # ... and with a new SM_DB_PASSWORD, the db host's role takes it before the app hosts restart on it.
    both = provision_waves(targets, roles, looked(db1=[password, retired], web1=[rewritten]), env_file)
    assert [[t.name for t in wave.targets] for wave in both] == [["db1"], ["web1", "jobs1"], ["db1"]]
    assert [w.narrow is not None for w in both] == [True, False, False]
    from smship.engine.resources import Ensure, File, HostState
    whole = HostState(roles=["db"], files=[File("/etc/postgresql/17/main/pg_hba.conf", b"")],
                      ensures=[Ensure("postgres role shop", (), ()), Ensure(password.target, (), ()),
                               Ensure(retired.target, (), ())], postgres_major=17)
    early = both[0].narrow(whole)
    assert [e.name for e in early.ensures] == [password.target] and not early.files and early.postgres_major == 17

    # A failed db host stops the app hosts' wave: they are reported, not provisioned.
    said = []
    report = SimpleNamespace(host=lambda name, status, message: said.append((name, status, message)),
                             info=lambda message: said.append(message))
    ran = []

    class Fleet:
        def map(self, work, wave, waiting=None):
            ran.extend(t.name for t in wave)
            return FleetResult({t.name: RuntimeError("apt failed") for t in wave})

    outcome = in_waves(Fleet(), None, waves, report)
    assert ran == ["db1"] and sorted(outcome.failed) == ["db1", "jobs1", "web1"]
    assert said[0][0:2] == ("web1", "failed") and "db1 failed first" in said[0][2]
    # Failed in its early wave, the db host is not reported again with the waves it never reached.
    said.clear(), ran.clear()
    outcome = in_waves(Fleet(), lambda target, narrow: None, both, report)
    assert ran == ["db1"] and [line[0] for line in said] == ["web1", "jobs1"]


def test_web_hosts_whose_slots_switch_go_in_the_deploy_s_batches_after_the_rest():
    from types import SimpleNamespace

    from smship.engine.plan import Change, Plan
    from smship.provision.provision import HostOutcome, in_waves, provision_waves
    from smship.ssh import FleetResult

    env_file = "/srv/shop/shared/env"
    roles = {"db1": ["db"], "lb1": ["lb"], "web1": ["web"], "web2": ["web"], "web3": ["web"], "jobs1": ["worker"]}
    targets = [SimpleNamespace(name=name) for name in roles]
    rewritten = Change("file", env_file, "content (secret: not shown)")

    def looked(switching, **changes) -> FleetResult:
        return FleetResult({name: HostOutcome(Plan(changes=changes.get(name, [rewritten] if name in switching else []),
                                                   restarts_web_slots=name in switching), False)
                            for name in roles})

    def names(waves):
        return [[t.name for t in wave.targets] for wave in waves]

    every = looked({"web1", "web2", "web3"})
    assert names(provision_waves(targets, roles, every, env_file, lambda hosts: 2)) == [
        ["db1", "lb1", "web1", "web2", "jobs1"], ["web3"]]
    assert names(provision_waves(targets, roles, every, env_file, lambda hosts: 1)) == [
        ["db1", "lb1", "web1", "jobs1"], ["web2"], ["web3"]]
    # Only web2's slots switch (web1 and web3 have nothing to restart): nothing waits.
    assert names(provision_waves(targets, roles, looked({"web2"}), env_file, lambda hosts: 1)) == [list(roles)]
    # After the db host's wave, when it changes too.
    password = Change("ensure", "postgres role shop has the password SM_DB_PASSWORD", "apply")
    waves = provision_waves(targets, roles, looked({"web1", "web2"}, db1=[password]), env_file, lambda hosts: 1)
    assert names(waves) == [["db1"], ["lb1", "web1", "web3", "jobs1"], ["web2"]]

    # A web host failing its switch halts the batches after it, as a deploy's roll halts.
    said, ran = [], []
    report = SimpleNamespace(host=lambda name, status, message: said.append((name, status, message)),
                             info=lambda message: said.append(message))

    class Fleet:
        def map(self, work, wave, waiting=None):
            ran.extend(t.name for t in wave)
            return FleetResult({t.name: RuntimeError("gate") if t.name == "web1" else HostOutcome(Plan(), True)
                                for t in wave})

    outcome = in_waves(Fleet(), None, waves, report)
    assert ran == ["db1", "lb1", "web1", "web3", "jobs1"] and sorted(outcome.failed) == ["web1", "web2"]
    assert said[-1][0:2] == ("web2", "failed")
    assert "web1 failed first, and web slots switch batch by batch" in said[-1][2]


def test_compiled_templates_and_role_strings_are_kept_across_runs_and_checked_against_their_source(
        tmp_path, monkeypatch):
    from smship.templating import compiled_string

    monkeypatch.setenv("SMSHIP_CACHE_DIR", str(tmp_path / "cache"))
    first = environment(None)
    assert compiled_string(first, "{{ a }}-x").render(a=1) == "1-x"
    first.get_template("hardening.j2")
    cached = list((tmp_path / "cache" / "jinja").iterdir())
    assert len(cached) == 2 and oct((tmp_path / "cache" / "jinja").stat().st_mode & 0o777) == "0o700"

    # A later run compiles neither again ...
    later = environment(None)
    monkeypatch.setattr(later, "compile", lambda *a, **k: pytest.fail("compiled again"))
    assert compiled_string(later, "{{ a }}-x").render(a=2) == "2-x"
    later.get_template("hardening.j2")
    # ... but a changed source is compiled, never served stale.
    monkeypatch.undo()
    monkeypatch.setenv("SMSHIP_CACHE_DIR", str(tmp_path / "cache"))
    assert compiled_string(environment(None), "{{ a }}-y").render(a=3) == "3-y"


def test_a_worker_host_s_apply_waits_out_the_worker_s_warm_shutdown_when_a_handler_restarts_it(project):
    jobs = state_for(project, "jobs1")
    assert jobs.handler_wait == 600          # the inventory's worker.stop_timeout
    facts = converged_facts(jobs)
    facts["paths"]["/srv/shop/shared/env"]["sha256"] = "0" * 64
    restarting = planned(jobs, facts)
    assert "restart app units" in restarting.handlers
    assert apply_request(jobs, restarting).timeout == 900 + 600
    # Nothing restarts: the usual bound. A host without a worker: the usual bound too.
    facts = converged_facts(jobs)
    facts["paths"][jobs.directories[0].path]["mode"] = "0777"
    quiet = planned(jobs, facts)
    assert quiet.changes and not quiet.handlers, quiet
    assert apply_request(jobs, quiet).timeout == 900
    web = state_for(project, "web1")
    assert web.handler_wait == 0


def test_a_role_s_handler_wait_must_be_a_number_of_seconds(project):
    (project / "roles").mkdir()
    (project / "roles" / "beat.yml").write_text('handler_wait: "{{ app.name }}"\n')
    with pytest.raises(RoleError, match="handler_wait: 'shop' is not a number of seconds"):
        state_for(project, "jobs1")
