"""The production checklist, one function per line of it.

Each function takes the gathered :class:`~smship.checklist.facts.Facts` and
returns ``(status, reason, fix)``; none of them opens a connection, so each
is tested on facts made by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from smship import logship
from smship.checklist import tls
from smship.checklist.firewall import ERROR, OPEN
from smship.checklist.hostos import hosts_os
from smship.checklist.model import Check
from smship.checknames import CHECK_NAMES
from smship.inventory import Pooler
from smship.secretkey import DEVELOPMENT_ENVIRONMENTS

PASS, WARN, FAIL = "pass", "warn", "fail"
NO_LIVE = "no live release yet (nothing deployed)"
DEFAULT_POOL, DEFAULT_OVERFLOW = 10, 20
# Above this share of the limit the budget warns: migrations, psql and
# backups need connections too.
HEADROOM = 0.9
# The checks that read the database (through the probe of an app host).
DATABASE_CHECKS = ("migrations", "admin", "connection-budget")


def _where(names: list[str]) -> str:
    return ", ".join(names)


def _provision_fix(facts, sources: list[str]) -> str:
    name = facts.ctx.name
    if sources == ["inventory"]:
        return f"fix the inventory, then run 'smship provision {name}'"
    if "inventory" in sources:
        return f"fix the inventory, then 'smship provision {name}' and 'smship deploy {name}' (restarts the app)"
    return (f"the hosts' env file differs from the inventory: 'smship provision {name}' rewrites it, "
            f"'smship deploy {name}' restarts the app on it")


def _settings_check(facts, judge, what: str, fix: str):
    """Run ``judge(settings) -> problem or None`` on the inventory and every host's env file."""
    if facts.inventory_error and not facts.inventory:
        return FAIL, facts.inventory_error, "fix the secrets backend named above"
    problems: dict[str, list[str]] = {}
    for source, settings in facts.settings_sources():
        problem = judge(settings)
        if problem:
            problems.setdefault(problem, []).append(source)
    if problems:
        reason = "; ".join(f"{problem} ({_where(sources)})" for problem, sources in problems.items())
        sources = [s for group in problems.values() for s in group]
        return FAIL, reason, f"{fix}; {_provision_fix(facts, sources)}"
    hosts = len(facts.settings_sources()) - (1 if facts.inventory else 0)
    return PASS, f"{what} (inventory and {hosts} host env file(s))", ""


def _names(facts):
    """The names the app reads its settings under (``app.settings``)."""
    return facts.ctx.app.settings


def environment(facts):
    name = _names(facts).environment

    def judge(s):
        value = s.values.get(name, "development")
        return f"{name} is {value!r}" if value.strip().lower() in DEVELOPMENT_ENVIRONMENTS else None
    return _settings_check(facts, judge, f"{name} is a production value",
                           f"set {name} to production in the environment's env:")


def secret_key(facts):
    name = _names(facts).secret_key

    def judge(s):
        return s.secret_key_weakness
    return _settings_check(facts, judge, f"{name} is strong",
                           f"put a strong {name} in the secrets backend (smship rotate-secret ENV)")


def database_url(facts):
    name, driver = _names(facts).database_url, _names(facts).database_driver

    def judge(s):
        if s.database_scheme is None:
            return f"{name} is not set"
        if s.database_scheme != driver:
            return f"{name} is {s.database_scheme}://, not {driver}://"
        return None
    return _settings_check(facts, judge, f"{name} is {driver}://",
                           f"give the environment a db host, or set {name}={driver}://... in its secrets")


def log_format(facts):
    name = _names(facts).log_format
    if name is None:
        status, reason, fix = PASS, "not judged: the app declares no log format setting (app.settings.log_format)", ""
    else:
        def judge(s):
            value = s.values.get(name, "text")
            return f"{name} is {value!r}" if value != "json" else None
        status, reason, fix = _settings_check(facts, judge, f"{name} is json", f"set {name}: json in the environment's env:")
    if facts.env.logs is None or status == FAIL:
        return status, reason, fix
    shipped, problem, shipping_fix = log_shipping(facts)
    if not shipped:
        return FAIL, problem, shipping_fix
    return status, f"{reason}; {problem}", fix


def log_shipping(facts) -> tuple[bool, str, str]:
    """(shipped, reason, fix): whether each app host's marker line reached the collector."""
    collector = facts.env.logs.collector
    if not facts.log_markers:
        return True, "log shipping not judged (no marker was logged)", ""
    missing: dict[str, str] = {}
    for name, marker in facts.log_markers.items():
        answer = facts.hosts.get(name)
        logged = answer.log_marker if answer else None
        if answer is None:
            missing[name] = "not reached"
        elif logged is None or not logged.logged:
            missing[name] = f"could not log its marker ({logged.error if logged else 'no answer'})"
        elif facts.log_received is None:
            missing[name] = f"the collector could not be read ({facts.log_error or 'not reached'})"
        elif marker not in facts.log_received:
            missing[name] = (f"its marker did not reach {collector} in {logship.MARKER_WAIT:g} s "
                             f"(uploader {logged.uploader})")
    if missing:
        reason = "log shipping: " + "; ".join(f"{host}: {why}" for host, why in missing.items())
        hosts = ", ".join(missing)
        return False, reason, (f"see `journalctl -u {logship.UPLOAD_UNIT}` on {hosts} and "
                               f"`journalctl -u {logship.COLLECTOR_UNIT}` on {collector}; `smship provision` "
                               f"restores the uploaders, the collector and its firewall rule")
    return True, f"every app host's marker line reached the collector {collector}", ""


def _database_problem(facts):
    """(status, reason, fix) when the database could not be read, else None."""
    if not facts.live():
        return PASS, NO_LIVE, ""
    if facts.db is None:
        return FAIL, "the database was not asked", "see the errors above"
    if facts.db.error:
        return FAIL, f"cannot read the database from {facts.db_host}: {facts.db.error}", _database_fix(facts)
    return None


def _database_fix(facts) -> str:
    """What to do about an unreadable database: the probe's own trouble is not Postgres's."""
    if facts.db.cause == "probe":
        return (f"the probe runs the live release's Python on {facts.db_host} as the app user with its env file "
                f"and reads the database with the app's own driver; fix what it names, "
                f"or skip these checks with --skip-check {','.join(DATABASE_CHECKS)}")
    return (f"check that Postgres runs on the db host and {_names(facts).database_url} "
            "points at it (smship status ENV)")


def migrations(facts):
    from smship.steps.migrate import uses_alembic

    if not uses_alembic(facts.ctx.app):
        migrate = facts.ctx.app.migrate
        what = "no migration" if migrate is None else f"the migration '{' '.join(migrate.command)}'"
        return PASS, f"not judged: the app declares {what}, not alembic (app.migrate)", ""
    trouble = _database_problem(facts)
    if trouble:
        return trouble
    live = facts.live()
    release = live[facts.db_host]
    heads = set(facts.hosts[facts.db_host].alembic_heads or [])
    revisions = set(facts.db.revisions)
    name = facts.ctx.name
    if not heads:
        return WARN, f"release {release} declares no alembic head", "build releases with smship build"
    if revisions == heads:
        return PASS, f"the database is at {', '.join(sorted(heads))}, the head of the live release {release}", ""
    known = set(facts.db.known)
    if revisions and not revisions & known:
        return WARN, (f"the database is at {', '.join(sorted(revisions))}, which the live release {release} does "
                      f"not know (newer: a later release migrated it, as after a rollback)"), \
            f"keep migrations expand/contract, or deploy the newer release again (smship deploy {name})"
    return FAIL, (f"the database is at {', '.join(sorted(revisions)) or 'no revision'}, behind the head "
                  f"{', '.join(sorted(heads))} of the live release {release}"), \
        f"smship deploy {name} runs '{' '.join(facts.ctx.app.migrate.command)}' before any restart"


def admin(facts):
    trouble = _database_problem(facts)
    if trouble:
        return trouble
    count = facts.db.admins
    if count is None:
        return WARN, "the database has no users.is_admin column: cannot tell whether an admin exists", \
            "create the admin user the app's way and check it can log in"
    if count:
        return PASS, f"{count} admin user(s) exist", ""
    return FAIL, "no admin user exists", (
        f"create an admin user with the app's own bootstrap command, run on {facts.db_host} as "
        f"{facts.layout.user} with {facts.layout.env_file} (the password on stdin, never as an argument); "
        "an app without admin users turns this check off in the inventory (checks: skip: [admin])")


def frontend(facts):
    from smship.checklist.facts import frontend_manifest

    manifest = frontend_manifest(facts.ctx.app)
    if manifest is None:
        what = "no front end" if facts.ctx.app.frontend is None else "a front end without a manifest"
        return PASS, f"not judged: the app declares {what} (app.frontend)", ""
    web = [h.name for h in facts.env.hosts if "web" in h.roles and h.name in facts.hosts]
    live = facts.live()
    if not any(name in live for name in web):
        return PASS, NO_LIVE, ""
    missing = [f"{n} ({live[n]})" for n in web if n in live and not facts.hosts[n].frontend]
    if missing:
        return FAIL, f"{manifest} is missing from the live release on {_where(missing)}", \
            f"build the front end into the release ({' '.join(facts.ctx.app.frontend.build)}; smship build does it) " \
            "and deploy again"
    return PASS, f"the built front end ({manifest}) is in the live release on every web host", ""


def proxy_headers(facts):
    from smship.checklist.nginx import forwards_headers

    problems = []
    for host in facts.env.hosts:
        answer = facts.hosts.get(host.name)
        if answer is None:
            continue
        if "web" in host.roles:
            # The serving web slot's unit (slot a's before the first deploy).
            web_unit, unit = next(((n, u) for n, u in answer.units.items() if facts.layout.is_web_slot(n)),
                                  (facts.layout.web_slot_service % "a", None))
            if unit is None or "--proxy-headers" not in unit.exec_start:
                problems.append(f"{host.name}: {web_unit} is not configured with --proxy-headers")
            elif unit.cmdline and "--proxy-headers" not in unit.cmdline:
                problems.append(f"{host.name}: the running uvicorn was started without --proxy-headers")
        if {"web", "lb"} & set(host.roles):
            if answer.nginx_error is not None or not answer.nginx:
                failed = answer.nginx_error if answer.nginx_error is not None else "no answer"
                problems.append(f"{host.name}: nginx -T failed: {failed}")
                continue
            missing = forwards_headers(answer.nginx, facts.env.domain)
            if missing:
                problems.append(f"{host.name}: nginx {missing}")
    if problems:
        return FAIL, "; ".join(problems), \
            f"run 'smship provision {facts.ctx.name}' (uvicorn --proxy-headers, nginx proxy_set_header " \
            f"X-Forwarded-Proto/For), then restart the web units (smship deploy {facts.ctx.name})"
    return PASS, "uvicorn runs with --proxy-headers; nginx forwards X-Forwarded-Proto and X-Forwarded-For", ""


def _tls_host(facts, name: str) -> tuple[str, str] | None:
    """(status, reason) for one host's HTTPS; the reason does not name the host."""
    served = facts.served.get(name)
    if served is None:
        return None
    if served.error:
        return FAIL, f"no HTTPS answer: {served.error}"
    cert = tls.x509.load_der_x509_certificate(served.der)
    domain = facts.env.domain
    names = tls.names_of(cert)
    if not tls.name_matches(names, domain):
        return FAIL, f"the certificate is for {', '.join(names) or 'no name'}, not {domain}"
    left = tls.days_left(cert)
    if left < facts.cert_days:
        when = "expired" if left < 0 else f"expires in {left:.0f} day(s)"
        return FAIL, f"the certificate {when} (at least {facts.cert_days} wanted)"
    if facts.env.tls.source == "files":
        configured = tls.first_pem(facts.configured_certificate or "")
    else:
        answer = facts.hosts.get(name)
        configured = tls.first_pem((answer.certificate if answer else None) or "")
    if configured is not None and tls.fingerprint(configured) != tls.fingerprint(cert):
        return FAIL, "it serves a certificate other than the configured one"
    if not served.trusted:
        return WARN, f"valid {left:.0f} more days, but not trusted by this machine's CAs ({served.trust_error})"
    return PASS, f"{domain}, valid {left:.0f} more days"


def _grouped(verdicts: list[tuple[str, str, str]], status: str) -> str:
    """"lab1, lab2: reason" for the hosts that share a reason."""
    hosts: dict[str, list[str]] = {}
    for name, got, reason in verdicts:
        if got == status:
            hosts.setdefault(reason, []).append(name)
    return "; ".join(f"{_where(names)}: {reason}" for reason, names in hosts.items())


def https(facts):
    verdicts = [(h.name, *v) for h in facts.env.hosts if (v := _tls_host(facts, h.name))]
    if not verdicts:
        return WARN, "no web or lb host answered the question", "see the unreachable hosts above"
    if any(status == FAIL for _, status, _ in verdicts):
        return FAIL, _grouped(verdicts, FAIL), (f"install a certificate for {facts.env.domain} valid for more than "
                                               f"{facts.cert_days} days (tls: in the inventory) and run "
                                               f"'smship provision {facts.ctx.name}'")
    if any(status == WARN for _, status, _ in verdicts):
        fix = "tls.source self-signed is for labs: use a certificate from a CA" \
            if facts.env.tls.source == "self-signed" else "serve the full chain (leaf then intermediates)"
        return WARN, _grouped(verdicts, WARN), fix
    return PASS, _grouped(verdicts, PASS), ""


def _int(values: dict, key: str, default: int) -> int:
    try:
        return int(values.get(key, default))
    except ValueError:
        return default


def _ceiling(values: dict, names) -> int:
    """Connections one process may open: its pool and overflow, under the app's names (the
    framework's 10 + 20 when the app declares no such setting)."""
    pool = _int(values, names.db_pool_size, DEFAULT_POOL) if names.db_pool_size else DEFAULT_POOL
    overflow = _int(values, names.db_max_overflow, DEFAULT_OVERFLOW) if names.db_max_overflow else DEFAULT_OVERFLOW
    return pool + overflow


@dataclass(frozen=True)
class Budget:
    """The fleet's database connections at most, against what Postgres allows them."""
    rows: tuple[tuple[str, int, int], ...]  # (a host, or the new web slots; its processes; each one's ceiling)
    limit: int                              # max_connections less the superuser reserve
    source: str                             # where the limit was read, in words

    @property
    def demand(self) -> int:
        return sum(p * c for _, p, c in self.rows)

    @property
    def processes(self) -> int:
        return sum(p for _, p, _ in self.rows)


def budget_numbers(facts, inventory_only: bool = False) -> Budget:
    """Processes and per-process ceilings per host; the limit and where it came from.

    demand = sum over web hosts of uvicorn workers x (pool + overflow)
           + sum over worker hosts of Celery concurrency x (pool + overflow)
           + the beat x (pool + overflow)
           + one web batch's uvicorn workers again: while a batch restarts, each of its
             hosts runs the new web slot beside the serving one
           + every worker host's Celery concurrency again: the workers take a release all at
             once, each new worker slot beside the old one, which finishes its tasks
    limit  = max_connections - superuser_reserved_connections

    ``inventory_only``: the ceilings the inventory gives, once provisioning has
    written them to the hosts' env files.
    """
    env, inventory = facts.env, (facts.inventory.values if facts.inventory else None)
    rows = []
    for host in facts.app_hosts():
        processes = (env.web.workers if "web" in host.roles else 0) + \
                    (env.worker.concurrency if "worker" in host.roles else 0) + (1 if "beat" in host.roles else 0)
        answer = facts.hosts.get(host.name)
        # What runs now (the host's env file) or what the next provision
        # brings (the inventory): whichever asks more; a host whose env file
        # this command rewrites before restarting runs the inventory's.
        rewritten = inventory_only or (host.name in facts.rewritten and inventory is not None)
        sources = (inventory,) if rewritten else (inventory, answer.env_values() if answer else None)
        ceiling = max((_ceiling(v, facts.ctx.app.settings) for v in sources if v is not None),
                      default=DEFAULT_POOL + DEFAULT_OVERFLOW)
        rows.append((host.name, processes, ceiling))
    web = [row for row, host in zip(rows, facts.app_hosts()) if "web" in host.roles]
    if web:
        batch = env.web.batch_count(len(web))
        rows.append((f"new web slots (batch of {batch})", batch * env.web.workers, max(c for _, _, c in web)))
    workers = [row for row, host in zip(rows, facts.app_hosts()) if "worker" in host.roles]
    if workers:
        rows.append((f"new worker slots ({len(workers)} at once)", len(workers) * env.worker.concurrency,
                     max(c for _, _, c in workers)))
    db = facts.db
    if db is not None and not db.error and db.max_connections is not None:
        limit, source = db.max_connections - db.reserved_connections, "read from Postgres"
    else:
        limit, source = env.db.max_connections - 3, "from the inventory's db.max_connections"
    return Budget(tuple(rows), limit, source)


def suggest_pool(limit: int, processes: int) -> tuple[int, int] | None:
    """Pool and overflow (1:2, like the framework's 10/20) that fit ``limit``; None when nothing does."""
    per = int(limit * HEADROOM) // max(processes, 1)
    if per < 2:
        return None
    pool = max(1, per // 3)
    return pool, per - pool


def suggest_pooler(limit: int, demand: int) -> tuple[int, int]:
    """PgBouncer's server pool (what Postgres can spare) and client limit (the fleet's demand, rounded up)."""
    return max(1, int(limit * HEADROOM)), max(Pooler().max_client_conn, -(-demand // 100) * 100)


def pooled_budget(facts, n: Budget, detail: str):
    """With PgBouncer: the app's pools against its client limit, its server pool against Postgres'."""
    pooler, name = facts.env.db.pooler, facts.ctx.name
    clients = (f"{n.demand} client connections at most ({detail}) for PgBouncer's max_client_conn "
               f"{pooler.max_client_conn}")
    servers = (f"its pool of {pooler.pool_size} server connections for a limit of {n.limit} "
               f"(max_connections less the superuser reserve, {n.source})")
    reason = f"{clients}; {servers}"
    _, enough = suggest_pooler(n.limit, n.demand)
    if n.demand > pooler.max_client_conn:
        return FAIL, reason, (f"raise db.pooler.max_client_conn to {enough} (or lower the app's pool sizes), then "
                              f"'smship provision {name}'")
    if pooler.pool_size > n.limit * HEADROOM:
        fits = int(n.limit * HEADROOM)
        return (FAIL if pooler.pool_size > n.limit else WARN), reason, (
            f"lower db.pooler.pool_size to {fits} (migrations, psql and backups need connections of their own) "
            f"or raise db.max_connections, then 'smship provision {name}'")
    return PASS, reason, ""


def connection_budget(facts):
    n = budget_numbers(facts)
    detail = " + ".join(f"{name} {p}x{c}" for name, p, c in n.rows)
    if facts.env.db.pooler is not None:
        return pooled_budget(facts, n, detail)
    reason = (f"{n.demand} connections at most ({detail}) for a limit of {n.limit} "
              f"(max_connections less the superuser reserve, {n.source})")
    if n.demand <= n.limit * HEADROOM:
        if facts.db is not None and facts.db.error:
            # The migrations check fails on an unreadable database already;
            # the budget itself can still be judged on the inventory's limit.
            return WARN, f"cannot read max_connections ({facts.db.error}); {reason}", _database_fix(facts)
        return PASS, reason, ""
    planned = budget_numbers(facts, inventory_only=True) if facts.inventory else None
    if planned and planned.demand <= n.limit * HEADROOM:
        # The inventory was lowered already: the hosts' env files are behind,
        # and the app keeps their values until provisioning rewrites them.
        inventory_ceiling = {name: ceiling for name, _, ceiling in planned.rows}
        stale = [name for name, _, ceiling in n.rows if ceiling > inventory_ceiling[name]]
        return (FAIL if n.demand > n.limit else WARN), \
            f"{reason}; the inventory's pool sizes fit ({planned.demand} connections) but the env files of " \
            f"{_where(stale)} still hold larger ones", _provision_fix(facts, stale)
    suggestion = suggest_pool(n.limit, n.processes)
    names = facts.ctx.app.settings
    pool, clients = suggest_pooler(n.limit, n.demand)
    pooler = (f"put PgBouncer in front of Postgres with db.pooler: {{pool_size: {pool}, max_client_conn: {clients}}} "
              f"(the {n.demand} client connections then share {pool} of Postgres')")
    if suggestion and names.db_pool_size and names.db_max_overflow:
        fix = (f"set {names.db_pool_size}: {suggestion[0]} and {names.db_max_overflow}: {suggestion[1]} in the "
               f"environment's env: ({n.processes} processes), or {pooler}, or raise db.max_connections; then "
               "provision and deploy")
    else:
        fix = f"{pooler}, or raise db.max_connections; then provision and deploy"
    return (FAIL if n.demand > n.limit else WARN), reason, fix


def beat(facts):
    active = [name for name, answer in facts.hosts.items() if answer.beat in ("active", "activating", "reloading")]
    unknown = [name for name in facts.unreachable]
    planned = [h.name for h in facts.env.hosts if "beat" in h.roles]
    if not planned and not active:
        return PASS, "no beat in this environment (no workers)", ""
    if len(active) == 1 and not unknown:
        return PASS, f"exactly one beat is active ({active[0]})", ""
    unit = facts.layout.beat_service
    if len(active) > 1:
        others = [n for n in active if n not in planned]
        return FAIL, f"{len(active)} beats are active ({_where(active)}): scheduled tasks run more than once", \
            f"stop {unit} on {_where(others or active[1:])} (sudo systemctl disable --now {unit}) and run " \
            f"'smship provision {facts.ctx.name}'"
    if not facts.live():
        return PASS, NO_LIVE, ""
    if not active and unknown:
        return FAIL, f"no beat is active on the hosts that answered; not asked: {_where(unknown)}", \
            "bring the unreachable hosts back and check again"
    if unknown:
        return WARN, f"one beat is active ({active[0]}); not asked: {_where(unknown)}", \
            "bring the unreachable hosts back and check again"
    return FAIL, f"no beat is active (expected on {_where(planned)})", \
        f"sudo systemctl start {unit} on {_where(planned)}, and see journalctl -u {unit}"


def sm010(facts):
    found = []
    for name, answer in facts.hosts.items():
        for unit, state in answer.units.items():
            if state.sm010:
                found.append(f"{name} {unit}: {state.sm010}")
    if found:
        return FAIL, "SM010 (the app's migration check) since the last start: " + "; ".join(found), \
            f"the database is not at the release's head: smship deploy {facts.ctx.name} migrates first"
    if not facts.live():
        return PASS, NO_LIVE, ""
    return PASS, "no SM010 in the app units' journals since their last start", ""


def drain(facts):
    """With an lb: every host's nginx takes part in draining, and no web host is left drained."""
    lbs = [h.name for h in facts.env.hosts if "lb" in h.roles]
    if not lbs:
        return PASS, "no load balancer: web hosts are never drained", ""
    flag = facts.layout.drain_flag
    stale, left = [], []
    for host in facts.env.hosts:
        answer = facts.hosts.get(host.name)
        nginx = answer.nginx if answer else None
        if nginx is None:
            continue  # unreachable, or nginx -T failed (proxy-headers names it)
        if "web" in host.roles and flag not in nginx:
            stale.append(f"{host.name}: nginx does not turn the lb's requests away while drained")
        if "lb" in host.roles and "error_page 421" not in nginx:
            stale.append(f"{host.name}: nginx does not send a drained host's requests to another web host")
        if "web" in host.roles and answer.drained:
            left.append(host.name)
    if stale:
        return FAIL, "; ".join(stale) + " (provisioned by an older smship)", \
            f"run 'smship provision {facts.ctx.name}' on every web and lb host before deploying"
    if left:
        return WARN, f"{_where(left)} drained from the load balancer (a halted deploy could not put it back)", \
            f"'smship deploy {facts.ctx.name}' puts a host back once it is activated; or, if it serves the " \
            f"live release, remove {flag} on it"
    return PASS, f"every web host can be drained without an nginx reload, and none is ({_where(lbs)})", ""


def firewall(facts):
    env, name = facts.env, facts.ctx.name
    if not env.firewall.enabled:
        return WARN, "firewall.enabled is false: Postgres and Redis rely on their passwords alone", \
            f"set firewall.enabled: true in the inventory and run 'smship provision {name}'"
    if not env.hosts_with("db") and env.logs is None:
        return PASS, "no db host or log collector in this fleet", ""
    if not facts.reach:
        return WARN, "nothing to try from: this machine is an app host and no lb host is outside the app hosts", \
            "run 'smship check' from a machine that is not an app host"
    opened = [r for r in facts.reach if r.outcome == OPEN]
    if opened:
        return FAIL, "; ".join(f"{r.target} accepts a connection from {r.source}, which is not an app host"
                               for r in opened), \
            f"run 'smship provision {name}' (nftables on the db host and the log collector admits only the app hosts)"
    unknown = [r for r in facts.reach if r.outcome == ERROR]
    if unknown:
        return WARN, "; ".join(f"{r.source} could not try {r.target}: {r.detail}" for r in unknown), \
            "see the error above; the connections that could be tried were refused"
    sources = ", ".join(dict.fromkeys(r.source for r in facts.reach))
    targets = ", ".join(dict.fromkeys(r.target for r in facts.reach))
    return PASS, f"{targets} refuse {sources} (not app hosts)", ""


def hosts(facts):
    if facts.unreachable:
        return FAIL, "; ".join(facts.unreachable.values()), "bring the hosts back (smship status ENV) and check again"
    return PASS, f"all {len(facts.hosts)} host(s) answered", ""


CHECKS = [
    Check("hosts", "every host answers", hosts),
    Check("hosts-os", "every host runs a Debian release smship is tested on, app hosts one Python", hosts_os),
    Check("environment", "the app's environment setting is not development/testing", environment),
    Check("secret-key", "the app's signing key is strong and not a default", secret_key),
    Check("database-url", "the app's database URL has its declared driver", database_url),
    Check("migrations", "the database is at the alembic head of the live release", migrations, advisory=True),
    Check("frontend", "the built front end is in the live release", frontend, advisory=True),
    Check("admin", "an admin user exists", admin, advisory=True),
    Check("proxy-headers", "uvicorn --proxy-headers; nginx forwards X-Forwarded-Proto/For", proxy_headers),
    Check("tls", "HTTPS answers with a certificate for the domain, not expiring soon", https),
    Check("firewall", "Postgres and Redis refuse connections from hosts that are not app hosts", firewall),
    Check("log-format", "the app logs JSON (its log format setting is json)", log_format),
    Check("connection-budget", "the fleet's database connections fit max_connections", connection_budget),
    Check("beat", "exactly one Celery beat is active in the fleet", beat),
    Check("drain", "with an lb, web hosts drain without a reload and none is left drained", drain),
    Check("sm010", "no SM010 in the journal since the last start", sm010, advisory=True),
]

NAMES = [c.name for c in CHECKS]
# The inventory validates checks.skip against the same names without importing the checks.
assert NAMES == list(CHECK_NAMES), "smship/checknames.py must list the checks of CHECKS, in order"
