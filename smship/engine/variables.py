"""The variables role files and templates see for one host."""

from __future__ import annotations

from typing import Any

from smship.appenv import app_settings, database_name, direct_settings
from smship.backuprepo import backup_variables
from smship.context import EnvContext
from smship.firewall import RULES_PATH, UNIT, host_firewall
from smship.hostos import UNKNOWN_OS, HostOS, python_packages
from smship.hostroles import app_hosts, is_app_host
from smship.inventory import Environment, Host
from smship.layout import Layout
from smship.logship import CONFIG_DIR as LOG_CONFIG_DIR
from smship.logship import collector_of, ships
from smship.logship import for_host as log_shipping
from smship.secrets import backend_for
from smship.upstreamtls import for_host

def roles_of(env: Environment, host: Host) -> list[str]:
    """The roles applied to ``host``: its own, after the shared ones, then log shipping's."""
    shared = ["base", "firewall"] + (["app"] if is_app_host(host) else [])
    collector = collector_of(env)
    logs = (["logs"] if collector is not None and collector.name == host.name else []) + \
        (["logship"] if ships(env, host) else [])
    return shared + list(host.roles) + logs


def host_variables(ctx: EnvContext, host: Host, secrets: dict[str, str],
                   facts: HostOS | None = None, *, env_file_only: bool = False) -> dict[str, Any]:
    """Role variables; ``facts`` (what the host's distribution has) decide versions and paths.

    Without facts (rendering only the env file) versions stay unknown; ``env_file_only``
    also leaves out the upstream TLS pair, which costs a key derivation per host.
    """
    env = ctx.env
    layout = Layout.of(ctx.app, env)
    apps = app_hosts(env.hosts)
    source = backend_for(env.secrets).description
    db_name = database_name(ctx.app, env)
    postgres_major = env.db.postgres_version
    if facts is not None and "db" in host.roles:
        postgres_major = facts.postgres_major(postgres_major)
    return {
        "backup": (backup_variables(ctx.app, env, ctx.name, secrets, source, postgres_major)
                   if "db" in host.roles else None),
        "os": facts,
        "python_packages": python_packages(ctx.app),
        "postgres_major": postgres_major,
        "nginx": (facts or UNKNOWN_OS).nginx_facts(),
        "app": ctx.app,
        "env_name": ctx.name,
        "env": env,
        "domain": env.domain,
        "host": host,
        "layout": layout,
        "web": env.web,
        "worker": env.worker,
        "db": env.db,
        "db_name": db_name,
        # Which SM_DB_PASSWORD the db host last set on the app's role (a fingerprint).
        "db_password_mark": f"/var/lib/smship/{db_name}-db-password.fingerprint",
        "health": env.health,
        "tls": env.tls,
        "secrets": secrets,
        "settings": app_settings(ctx.app, env, secrets, source),
        "direct_settings": direct_settings(ctx.app, env, secrets),
        "pooler": env.db.pooler,
        "pooler_prepared_statements": bool(facts and facts.pgbouncer_tracks_prepared_statements()),
        # Which SM_DB_PASSWORD PgBouncer's auth file was last written for (a fingerprint).
        "pooler_password_mark": f"/var/lib/smship/{db_name}-pooler-password.fingerprint",
        "web_hosts": env.hosts_with("web"),
        "lb_hosts": env.hosts_with("lb"),
        "app_hosts": apps,
        "db_host": (env.hosts_with("db") or [None])[0],
        "firewall": host_firewall(env, host, facts.ssh_ports if facts is not None else ()),
        # lb -> web TLS, verified against the environment's CA (only with an lb).
        "upstream": for_host(ctx.app.name, ctx.name, host.roles, host.name, secrets)
        if env.hosts_with("lb") and not env_file_only else None,
        # Log shipping (the logs section): the collector's and each uploader's certificates.
        "logship": None if env_file_only else log_shipping(ctx.app.name, ctx.name, env, host, secrets),
        # Whether this host plays each part of log shipping now (what it no longer plays is undone).
        "ships_logs": ships(env, host),
        "collects_logs": collector_of(env) is not None and collector_of(env).name == host.name,
        "log_config_dir": LOG_CONFIG_DIR,
        "firewall_rules": RULES_PATH,
        "firewall_unit": UNIT,
    }
