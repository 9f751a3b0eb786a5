"""Everything one command needs to know about the environment it acts on."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from smship.inventory import App, Environment, LoadedInventory, load
from smship.layout import Layout
from smship.output import Reporter
from smship.secrets import read_secrets
from smship.settings import Settings, SettingsError, load_settings


@dataclass
class EnvContext:
    """The validated inventory, the chosen environment and the reporter."""

    inventory: LoadedInventory
    name: str
    env: Environment
    settings: Settings
    reporter: Reporter

    @classmethod
    def open(cls, name: str, inventory_path: Path | None = None, output: str | None = None) -> "EnvContext":
        settings = load_settings()
        if output:
            if output not in ("text", "json"):
                raise SettingsError(f"-o/--output {output[:40]!r}: must be 'text' or 'json'")
            settings = settings.model_copy(update={"output": output})
        loaded = load(Path(inventory_path or settings.inventory))
        env = loaded.environment(name)
        env = env.model_copy(update={"ssh": settings.apply_to(env.ssh)})
        return cls(loaded, name, env, settings, Reporter(settings.output))

    @property
    def app(self) -> App:
        return self.inventory.app

    @cached_property
    def layout(self) -> Layout:
        """Where everything lives on this environment's hosts (one per command)."""
        return Layout.of(self.app, self.env)

    @cached_property
    def secrets(self) -> dict[str, str]:
        """The secrets backend's values (the app's extra secret names included), read once per command."""
        return read_secrets(self.env.secrets, self.app.settings.backend_names())

    @property
    def app_path(self) -> str:
        return self.env.resolved_app_path(self.app)

    @property
    def app_user(self) -> str:
        return self.env.resolved_app_user(self.app)


def targets_of(ctx: EnvContext, hosts: list | None = None) -> list:
    """SSH targets for ``hosts`` (default: every host of the environment)."""
    from smship.ssh import Target

    ssh = ctx.env.ssh
    return [Target(name=h.name, address=h.address, port=h.port or ssh.port, user=h.user or ssh.user,
                   jump=h.jump, identity=ssh.identity) for h in (hosts if hosts is not None else ctx.env.hosts)]


def open_fleet(ctx: EnvContext, hosts: list | None = None):
    """One :class:`~smship.ssh.Fleet` for the whole command, with the inventory's options."""
    from smship.ssh import Fleet, SSHOptions

    ssh = ctx.env.ssh
    defaults = SSHOptions()
    options = SSHOptions(known_hosts=ssh.known_hosts or defaults.known_hosts,
                         ssh_config=ssh.config or defaults.ssh_config,
                         accept_unknown_hosts=ssh.accept_unknown_hosts,
                         connect_timeout=ssh.connect_timeout, parallel=ssh.parallel)
    return Fleet(targets_of(ctx, hosts), options)


@contextmanager
def counted_fleet(ctx: EnvContext, hosts: list | None = None):
    """:func:`open_fleet` for a whole command; the SSH round trips of each host go into the JSON document."""
    with open_fleet(ctx, hosts) as fleet:
        try:
            yield fleet
        finally:
            ctx.reporter.data["round_trips"] = dict(fleet.round_trips)


@contextmanager
def fleet_begun(ctx: EnvContext, hosts: list | None = None):
    """:func:`counted_fleet`, and an agent begun on each of its hosts at once: the logins, sudo, the
    interpreters and the agent's imports run while the command's own code loads and works out its first
    question, which takes them (``ahead=`` of :func:`smship.remote.client.ask`). Yields ``(fleet, ahead)``;
    an agent no request took is cancelled at the end, having changed nothing."""
    from smship.remote import AgentsAhead

    with counted_fleet(ctx, hosts) as fleet:
        ahead = AgentsAhead(fleet, list(fleet.targets.values()))
        try:
            yield fleet, ahead
        finally:
            ahead.cancel()


def select_hosts(ctx: EnvContext, limit: str | None, role: str | None = None) -> list:
    """Hosts named by ``--limit`` (host names or roles, comma separated), optionally of one role."""
    from smship.errors import SmshipError

    hosts = ctx.env.hosts if role is None else ctx.env.hosts_with(role)
    if not limit:
        return list(hosts)
    wanted = [w.strip() for w in limit.split(",") if w.strip()]
    known = {h.name for h in ctx.env.hosts} | {r for h in ctx.env.hosts for r in h.roles}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SmshipError(f"--limit {unknown[0]!r} is neither a host nor a role of environment {ctx.name!r}")
    return [h for h in hosts if h.name in wanted or set(h.roles) & set(wanted)]
