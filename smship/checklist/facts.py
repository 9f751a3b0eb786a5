"""Gathering what the checks judge: the inventory, each host, the database, HTTPS.

One agent round trip per host (in parallel), one probe of the database from
an app host running the live release, and one TLS handshake (two with the
trust question) per web and lb host.  The handshakes and the probe (on the
app host the inventory names first, web first) run while the hosts answer:
the probe's answer is kept when that host turns out to run a live release.  Secret values stay in this process's
memory or on the hosts; only verdicts about them are kept.
"""

from __future__ import annotations

import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from smship import logship
from smship.appenv import app_settings
from smship.checklist import firewall, tls
from smship.checklist.checks import DATABASE_CHECKS
from smship.checklist.dbprobe import DatabaseFacts, parse_probe, probe_command, probe_failed
from smship.context import EnvContext
from smship.errors import SmshipError
from smship.contract import AppContract
from smship.inventory import Host
from smship.layout import Layout
from smship.hostroles import app_hosts, app_units, is_app_host
from smship.release.apppaths import output_in_release
from smship.remote import client as agent
from smship.remote.client import HostChecks
from smship.secretkey import weakness
from smship.ssh import Fleet

KEY_RULE = (Path(__file__).parents[1] / "secretkey.py").read_text()


def plain_settings(app: AppContract) -> list[str]:
    """The names of the plain settings the checks judge, as the app reads them (``app.settings``)."""
    names = app.settings
    return [n for n in (names.environment, names.log_format, names.db_pool_size, names.db_max_overflow) if n]


def frontend_manifest(app: AppContract) -> str | None:
    """Where the built front end's manifest is in a release; None when the app declares none."""
    front = app.frontend
    if front is None or front.manifest is None:
        return None
    return posixpath.normpath(posixpath.join(output_in_release(front.output), front.manifest))


@dataclass
class Settings:
    """The judged view of one source of settings (the inventory, or a host's env file)."""

    values: dict[str, str]
    database_scheme: str | None
    secret_key_weakness: str | None


@dataclass
class Facts:
    ctx: EnvContext
    layout: Layout
    preflight: bool = False
    cert_days: int = 14
    inventory: Settings | None = None
    inventory_error: str = ""
    hosts: dict[str, HostChecks] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    db: DatabaseFacts | None = None
    db_host: str | None = None
    served: dict[str, tls.Served] = field(default_factory=dict)
    configured_certificate: str | None = None
    # Hosts whose env file the command (a deploy) rewrites from the inventory before any restart.
    rewritten: set[str] = field(default_factory=set)
    reach: list[firewall.Reach] = field(default_factory=list)
    # Log shipping: the marker each app host logged, and which of them the collector holds.
    log_markers: dict[str, str] = field(default_factory=dict)
    log_received: set[str] | None = None
    log_error: str = ""

    @property
    def env(self):
        return self.ctx.env

    def host(self, name: str) -> Host:
        return next(h for h in self.env.hosts if h.name == name)

    def app_hosts(self) -> list[Host]:
        return app_hosts(self.env.hosts)

    def live(self) -> dict[str, str]:
        """Live release per reachable app host (hosts with none left out)."""
        return {h.name: self.hosts[h.name].current for h in self.app_hosts()
                if h.name in self.hosts and self.hosts[h.name].current}

    def settings_sources(self) -> list[tuple[str, Settings]]:
        """("inventory", ...) then (host, ...) for each app host whose env file was read."""
        sources = [("inventory", self.inventory)] if self.inventory else []
        for host in self.app_hosts():
            answer = self.hosts.get(host.name)
            env = answer.env if answer else None
            if env and env.error is None:
                sources.append((host.name, Settings(env.values, env.database_scheme, env.secret_key_weakness)))
        return sources


def inventory_settings(ctx: EnvContext) -> Settings:
    source = str(ctx.env.secrets.path or "the environment")
    names = ctx.app.settings
    values = app_settings(ctx.app, ctx.env, ctx.secrets, source)
    url = values.get(names.database_url)
    return Settings({k: values[k] for k in plain_settings(ctx.app) if k in values},
                    url.partition("://")[0] if url else None, weakness(values.get(names.secret_key), names.secret_key))


def host_request(contract: AppContract, layout: Layout, host: Host, python: str | None = None,
                 log_marker: str | None = None):
    units = app_units(layout, host.roles)
    app = is_app_host(host)
    edge = bool({"web", "lb"} & set(host.roles))
    fields = {"root": layout.root, "frontend_manifest": frontend_manifest(contract),
              "env_file": layout.env_file if app else None, "plain": plain_settings(contract), "key_rule": KEY_RULE,
              "database_url": contract.settings.database_url, "secret_key": contract.settings.secret_key,
              "units": units, "beat_unit": layout.beat_service, "nginx": edge,
              "certificate": layout.tls_certificate if edge else None,
              "drain_flag": layout.drain_flag if "web" in host.roles else None,
              "web": layout.web_slots() if "web" in host.roles else None,
              "worker": layout.worker_slots() if "worker" in host.roles else None}
    if python:
        fields["python"] = python
    if log_marker:
        fields |= {"log_marker": log_marker, "log_tag": logship.CHECK_TAG, "upload_unit": logship.UPLOAD_UNIT}
    return agent.checkfacts(fields)


def gather(ctx: EnvContext, fleet: Fleet, *, preflight: bool = False, cert_days: int = 14,
           skip: tuple[str, ...] = ()) -> Facts:
    layout = ctx.layout
    facts = Facts(ctx, layout, preflight=preflight, cert_days=cert_days)
    try:
        facts.inventory = inventory_settings(ctx)
    except SmshipError as exc:
        facts.inventory_error = str(exc)
    python = ctx.app.interpreter    # the app hosts' interpreter, for hosts-os
    # Only `smship check` proves delivery: a deploy or rollback must not wait on, or be refused for,
    # the log collector (the host it would be most needed from may be the one that is down).
    if ctx.env.logs is not None and not preflight and "log-format" not in skip:
        facts.log_markers = logship.markers(ctx.env)
    database = not set(DATABASE_CHECKS) <= set(skip)
    with ThreadPoolExecutor(max_workers=2) as beside:
        served = beside.submit(read_served, ctx, fleet) if "tls" not in skip else None
        early = beside.submit(probe_early, facts, fleet) if database else None
        answers = agent.ask_all(fleet, lambda t: host_request(ctx.app, layout, facts.host(t.name), python,
                                                              facts.log_markers.get(t.name)))
        for name in answers:
            if name in answers.failed:
                facts.unreachable[name] = str(answers.failed[name])
            else:
                facts.hosts[name] = answers.succeeded[name]
        if facts.log_markers:
            read_collector(facts, fleet)
        if database:
            read_database(facts, fleet, early.result())
        if "firewall" not in skip and ctx.env.firewall.enabled:
            facts.reach = firewall.probe(ctx, fleet, set(facts.hosts))
        if served is not None:
            facts.served = served.result()
    if "tls" not in skip:
        if ctx.env.tls.source == "files" and ctx.env.tls.certificate:
            try:
                facts.configured_certificate = Path(ctx.env.tls.certificate).read_text()
            except OSError as exc:
                facts.configured_certificate = None
                facts.inventory_error = facts.inventory_error or f"{ctx.env.tls.certificate}: {exc.strerror}"
    return facts


def read_collector(facts: Facts, fleet: Fleet) -> None:
    """Which markers logged on the app hosts the collector received (it waits a little for them)."""
    collector = logship.collector_of(facts.env)
    logged = [m for name, m in facts.log_markers.items()
              if name in facts.hosts and facts.hosts[name].log_marker and facts.hosts[name].log_marker.logged]
    if collector is None or not logged or collector.name not in fleet.targets:
        return
    try:
        facts.log_received = agent.ask(fleet, fleet.targets[collector.name], agent.logmarkers(
            logship.REMOTE_DIR, logship.CHECK_TAG, logged, logship.MARKER_WAIT))
    except Exception as exc:  # reported by the check, naming the collector
        facts.log_error = f"{collector.name}: {exc}"


def read_served(ctx: EnvContext, fleet: Fleet) -> dict[str, tls.Served]:
    """What each web and lb host serves over HTTPS."""
    edges = {h.name for h in ctx.env.hosts if {"web", "lb"} & set(h.roles)}
    probed = fleet.map(lambda t: tls.probe(t.address, ctx.env.domain),
                       [t for t in fleet.targets.values() if t.name in edges])
    # A probe that raised instead of saying why is reported the same way.
    return {name: probed.succeeded.get(name) or tls.Served(error=str(probed.failed[name])) for name in probed}


def _probe(facts: Facts, fleet: Fleet, host: str, release: str | None):
    app = facts.ctx.app
    return fleet.run(host, probe_command(facts.layout, release, app.settings.database_url,
                                         app.migrate.cwd if app.migrate else "."), timeout=120)


def probe_early(facts: Facts, fleet: Fleet):
    """``(host, result)``: the probe on the live release of the app host :func:`read_database` picks
    when every host runs one, asked before the hosts said which run one; None without an app host."""
    hosts = sorted((h.name for h in facts.app_hosts() if h.name in fleet.targets),
                   key=lambda name: "web" not in facts.host(name).roles)
    if not hosts:
        return None
    try:
        return hosts[0], _probe(facts, fleet, hosts[0], None)
    except Exception:  # asked again, in turn, by read_database
        return None


def read_database(facts: Facts, fleet: Fleet, early=None) -> None:
    """Ask the database through the first app host (web first) that runs a live release (``early``:
    :func:`probe_early`'s answer, used when it came from that host)."""
    live = facts.live()
    order = sorted(live, key=lambda name: "web" not in facts.host(name).roles)
    if not order:
        return
    facts.db_host = order[0]
    result = early[1] if early is not None and early[0] == facts.db_host else \
        _probe(facts, fleet, facts.db_host, live[facts.db_host])
    facts.db = parse_probe(result.stdout) if result.stdout.strip() else \
        probe_failed(f"the database probe could not run: {result.summary()}")
