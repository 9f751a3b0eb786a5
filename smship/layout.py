"""Names on the hosts: paths and unit names, derived once from the inventory.

Provisioning, deploys, status and checks all read them from here, so a unit
or a directory cannot be called one thing in a template and another in code.
"""

from __future__ import annotations

from dataclasses import dataclass

from smship.inventory import App, Environment


@dataclass(frozen=True)
class Layout:
    app: str
    user: str
    root: str

    @classmethod
    def of(cls, app: App, env: Environment) -> "Layout":
        return cls(app=app.name, user=env.resolved_app_user(app), root=env.resolved_app_path(app))

    # Directories and files under the app root.
    @property
    def releases(self) -> str:
        return f"{self.root}/releases"

    @property
    def current(self) -> str:
        return f"{self.root}/current"

    @property
    def background_release(self) -> str:
        """The link the worker and beat run from: it moves on its own, so they can take a new release
        while this host's web tier still serves the old one (see smship.steps.tiers)."""
        return f"{self.root}/background"

    @property
    def shared(self) -> str:
        return f"{self.root}/shared"

    @property
    def env_file(self) -> str:
        return f"{self.shared}/env"

    @property
    def direct_env_file(self) -> str:
        """Settings only the release steps read after the env file: the database URL that bypasses a pooler."""
        return f"{self.shared}/env.direct"

    @property
    def uploads(self) -> str:
        return f"{self.shared}/uploads"

    @property
    def logs(self) -> str:
        return f"{self.shared}/logs"

    @property
    def storage_ca(self) -> str:
        """The CA certificate of a private S3 endpoint (readable by the app user)."""
        return f"{self.shared}/storage-ca.crt"

    @property
    def wheels(self) -> str:
        return f"{self.shared}/wheels"

    @property
    def venvs(self) -> str:
        return f"{self.shared}/venvs"

    @property
    def audit_log(self) -> str:
        # Root appends to it: out of the app user's reach, like the activation log.
        return f"{self.root}/deploys.jsonl"

    @property
    def activation_log(self) -> str:
        # Root's own record of which releases went live (out of the app user's reach).
        return f"{self.root}/activations.jsonl"

    @property
    def static_root(self) -> str:
        """nginx serves /static/ from here; assets of older releases stay."""
        return f"/var/www/{self.app}/static"

    @property
    def frontend_root(self) -> str:
        """nginx's root for a front end served outside /static/: its URL path is the path below."""
        return f"/var/www/{self.app}/frontend"

    def frontend_dir(self, url: str) -> str:
        """Where the built front end served at ``url`` lands on a web host.

        Under /static/ it joins the static root (smpy's /static/dist/ is
        ``static/dist``, as it always was); elsewhere, below :attr:`frontend_root`.
        """
        if url.startswith("/static/"):
            return (self.static_root + url[len("/static"):]).rstrip("/")
        return (self.frontend_root + url).rstrip("/")

    @property
    def drain_flag(self) -> str:
        """While this file exists, the host's nginx turns the load balancer's requests away.

        On disk, not under /run: a host that dies mid-deploy stays drained
        after it boots again, until a deploy activates it and passes the gate.
        """
        return f"/var/www/{self.app}/draining"

    def release(self, release_id: str) -> str:
        return f"{self.releases}/{release_id}"

    # The web tier runs in two slots, a and b: a deploy starts the new release in
    # the slot that is not serving, gates it on its own socket, then points
    # nginx at it and stops the other (see smship.remote.agent._activate_web).
    @property
    def web_service(self) -> str:
        """The web slots' template unit (``APP-web@a.service`` is slot a)."""
        return f"{self.app}-web@.service"

    @property
    def web_socket(self) -> str:
        return f"{self.app}-web@.socket"

    @property
    def web_units(self) -> str:
        """Both slots' services, as a pattern systemctl and journalctl match."""
        return f"{self.app}-web@*.service"

    @property
    def web_sockets(self) -> str:
        return f"{self.app}-web@*.socket"

    @property
    def web_slot_service(self) -> str:
        """The slot's service with ``%s`` for the slot, as the agent fills it in."""
        return f"{self.app}-web@%s.service"

    @property
    def web_slot_socket_unit(self) -> str:
        return f"{self.app}-web@%s.socket"

    @property
    def web_socket_dir(self) -> str:
        """Where systemd creates each slot's listening socket, root's: uvicorn gets it as fd 3."""
        return f"/run/{self.app}-web"

    @property
    def web_state(self) -> str:
        """Root's directory (0755: nginx follows the link in it) naming which slot serves and what each runs."""
        return f"/var/www/{self.app}/web"

    @property
    def web_upstream(self) -> str:
        """The link nginx connects through: to the serving slot's socket, switched atomically."""
        return f"{self.web_state}/uvicorn.sock"

    @property
    def web_slot_release(self) -> str:
        """The slot's link to the release it runs (``%s``: the slot), its working directory."""
        return f"{self.web_state}/slot-%s"

    @property
    def web_slot_socket(self) -> str:
        """The slot's listening socket (``%s``: the slot)."""
        return f"{self.web_socket_dir}/%s.sock"

    @property
    def pre_slot_web_units(self) -> tuple[str, str]:
        """The web service and socket of an smship before web slots (127.0.0.1:web.port)."""
        return f"{self.app}-web.service", f"{self.app}-web.socket"

    def is_web_slot(self, unit: str) -> bool:
        return unit in (self.web_slot_service % "a", self.web_slot_service % "b")

    def web_slots(self) -> dict[str, str]:
        """What the agent needs to find and switch the web slots: one dict, built only here."""
        return {"upstream": self.web_upstream, "release": self.web_slot_release,
                "service": self.web_slot_service, "socket_unit": self.web_slot_socket_unit,
                "socket": self.web_slot_socket, "legacy": list(self.pre_slot_web_units)}

    # systemd units.

    # The worker runs in two slots too: a deploy starts the new release in the
    # idle slot beside the serving worker, watches it come up, then asks the
    # old one to stop without waiting for its tasks (see
    # smship.remote.agent._activate_worker).
    @property
    def worker_service(self) -> str:
        """The worker slots' template unit (``APP-worker@a.service`` is slot a)."""
        return f"{self.app}-worker@.service"

    @property
    def worker_units(self) -> str:
        """Both worker slots, as a pattern systemctl and journalctl match."""
        return f"{self.app}-worker@*.service"

    @property
    def worker_slot_service(self) -> str:
        """The worker slot's service with ``%s`` for the slot, as the agent fills it in."""
        return f"{self.app}-worker@%s.service"

    @property
    def worker_state(self) -> str:
        """Root's directory naming which worker slot serves and the release each runs."""
        return f"{self.root}/worker"

    @property
    def worker_live(self) -> str:
        """The link naming the serving worker slot (its release link), switched atomically."""
        return f"{self.worker_state}/live"

    @property
    def worker_slot_release(self) -> str:
        """The worker slot's link to the release it runs (``%s``: the slot), its working directory."""
        return f"{self.worker_state}/slot-%s"

    @property
    def pre_slot_worker_service(self) -> str:
        """The worker unit of an smship before worker slots."""
        return f"{self.app}-worker.service"

    def worker_slots(self, stop_wait: float = 0) -> dict:
        """What the agent needs to find and switch the worker slots: one dict, built only here.
        ``stop_wait``: how long the idle slot may still be finishing its tasks (worker.stop_timeout)."""
        return {"live": self.worker_live, "release": self.worker_slot_release, "service": self.worker_slot_service,
                "legacy": self.pre_slot_worker_service, "stop_wait": stop_wait}

    @property
    def beat_service(self) -> str:
        return f"{self.app}-beat.service"

    @property
    def backup_service(self) -> str:
        return f"{self.app}-backup.service"

    @property
    def backup_timer(self) -> str:
        return f"{self.app}-backup.timer"

    # TLS material on web and lb hosts.
    @property
    def tls_certificate(self) -> str:
        return f"/etc/ssl/smship/{self.app}.crt"

    @property
    def tls_key(self) -> str:
        return f"/etc/ssl/smship/{self.app}.key"

    # lb -> web TLS: a web host's certificate from the environment's CA, and
    # the CA certificate(s) the lb verifies it with (smship.upstreamtls).
    @property
    def upstream_certificate(self) -> str:
        return f"/etc/ssl/smship/{self.app}-upstream.crt"

    @property
    def upstream_key(self) -> str:
        return f"/etc/ssl/smship/{self.app}-upstream.key"

    @property
    def upstream_ca(self) -> str:
        return f"/etc/ssl/smship/{self.app}-upstream-ca.crt"
