"""Roles: YAML declarations of desired state, rendered for one host.

A role file (``roles/<name>.yml``) lists packages, users, directories, files
rendered from ``templates/``, links, things to remove, ``ensure`` steps that
only a command can reach, services and the handlers that changes notify.
Every string may use Jinja (``{{ layout.web_service }}``), and any entry may
carry ``when:`` with a Jinja expression.  Roles never run commands at load
time; they only describe.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2
import yaml

from smship.errors import SmshipError
from smship.engine.resources import (Absent, Directory, Ensure, File, HandlerStep, HostState, Link, Service,
                                        User, WebSlotRestart, WorkerSlotRestart)
from smship.hostroles import ready_lines
from smship.remote import client as agent
from smship.templating import UnrenderableValue, compiled_string, find

_SECTIONS = {"description", "requires", "when", "packages", "users", "directories", "files", "links",
             "absent", "ensure", "services", "handlers", "handler_wait"}


class RoleError(SmshipError):
    pass


# libyaml's loader where PyYAML has it: a provision reads every role of every host.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=256)
def _parsed(path: Path, text: str) -> dict[str, Any]:
    return yaml.load(text, Loader=_YAML_LOADER) or {}


def load_role(name: str, project_dir: Path | None) -> tuple[Path, dict[str, Any]]:
    """The role file and its data, parsed once per content (callers do not change it)."""
    try:
        path = find("roles", f"{name}.yml", project_dir)
    except FileNotFoundError as exc:
        raise RoleError(str(exc)) from None
    data = _parsed(path, path.read_text())
    unknown = set(data) - _SECTIONS
    if unknown:
        raise RoleError(f"{path}: unknown section {sorted(unknown)[0]!r} (sections: {', '.join(sorted(_SECTIONS))})")
    return path, data


def role_order(names: list[str], project_dir: Path | None) -> list[str]:
    """Roles with everything they require first, each once."""
    ordered: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in ordered:
            return
        if name in chain:
            raise RoleError(f"roles require each other in a circle: {' -> '.join(chain + (name,))}")
        for required in load_role(name, project_dir)[1].get("requires", []):
            visit(required, chain + (name,))
        ordered.append(name)

    for name in names:
        visit(name, ())
    return ordered


class Renderer:
    """Renders a role's strings, conditions and templates with host variables."""

    def __init__(self, env: jinja2.Environment, variables: dict[str, Any], where: Path):
        self.env, self.vars, self.where = env, variables, where
        # Every host renders the same role strings: each is compiled once per environment.
        self._compiled = env.__dict__.setdefault("_smship_compiled", {})

    def _compile(self, kind: str, source: str):
        key = (kind, source)
        if key not in self._compiled:
            self._compiled[key] = (compiled_string(self.env, source) if kind == "text"
                                   else self.env.compile_expression(source))
        return self._compiled[key]

    def text(self, value: Any) -> str:
        source = str(value)
        if "{" not in source:
            return source       # no Jinja in it
        try:
            return self._compile("text", source).render(self.vars)
        except jinja2.TemplateError as exc:
            raise RoleError(f"{self.where}: {value!r}: {exc}") from None

    def condition(self, entry: dict[str, Any]) -> bool:
        expression = entry.get("when")
        if expression is None:
            return True
        try:
            return bool(self._compile("expression", str(expression))(self.vars))
        except jinja2.TemplateError as exc:
            raise RoleError(f"{self.where}: when {expression!r}: {exc}") from None

    def template(self, name: str) -> bytes:
        try:
            return self.env.get_template(self.text(name)).render(self.vars).encode()
        except jinja2.TemplateNotFound as exc:
            raise RoleError(f"{self.where}: template {exc.name!r} not found") from None
        except (jinja2.TemplateError, UnrenderableValue) as exc:
            raise RoleError(f"{self.where}: template {name!r}: {exc}") from None

    def argv(self, items: list[Any]) -> tuple[str, ...]:
        return tuple(self.text(item) for item in items)

    def handler_step(self, step: Any) -> HandlerStep:
        """A command (a list), ``{web slots: restart}``: the host's web slots switched onto the live
        release, gated on the environment's health settings as a deploy gates them, or ``{worker slots:
        restart}``: the worker's slots switched onto the serving worker's release, as a deploy does."""
        if isinstance(step, list):
            return self.argv(step)
        layout = self.vars["layout"]
        if step == {"web slots": "restart"}:
            return WebSlotRestart(layout.root, layout.web_slots(),
                                  agent.health_gate(self.vars["health"], self.vars["domain"], layout.web_service))
        if step == {"worker slots": "restart"}:
            return WorkerSlotRestart(layout.root, layout.worker_slots(self.vars["worker"].stop_timeout),
                                     ready_lines(layout, ["worker"], self.vars["host"].name)[layout.worker_service])
        raise RoleError(f"{self.where}: handler step {step!r}: a command (a list), {{web slots: restart}} "
                        "or {worker slots: restart}")

    def notify(self, entry: dict[str, Any]) -> tuple[str, ...]:
        return tuple(self.text(name) for name in entry.get("notify", []))


def _file_content(entry: dict[str, Any], r: Renderer) -> bytes:
    if "template" in entry:
        return r.template(entry["template"])
    if "local_file" in entry:
        path = Path(r.text(entry["local_file"])).expanduser()
        try:
            return path.read_bytes()
        except OSError as exc:
            raise RoleError(f"{r.where}: cannot read {path}: {exc.strerror}") from None
    if "content" in entry:
        return r.text(entry["content"]).encode()
    raise RoleError(f"{r.where}: file {entry.get('path')!r} needs template, local_file or content")


def _seconds(r: "Renderer", value: Any) -> float:
    text = r.text(value)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < 10 ** 6:
        raise RoleError(f"{r.where}: handler_wait: {text!r} is not a number of seconds")
    return seconds


def add_role(state: HostState, name: str, data: dict[str, Any], r: Renderer) -> None:
    """Render role ``data`` into ``state`` (in place)."""
    state.roles.append(name)
    if data.get("handler_wait") is not None:
        state.handler_wait = max(state.handler_wait, _seconds(r, data["handler_wait"]))
    live = lambda section: [e for e in data.get(section, []) if not isinstance(e, dict) or r.condition(e)]
    for package in live("packages"):
        text = r.text(package if isinstance(package, str) else package["name"])
        if text not in state.packages:
            state.packages.append(text)
    for e in live("users"):
        state.users.append(User(name=r.text(e["name"]), home=r.text(e["home"]),
                                shell=r.text(e.get("shell", "/usr/sbin/nologin")),
                                system=bool(e.get("system", True)),
                                groups=tuple(r.text(g) for g in e.get("groups", []))))
    for e in live("directories"):
        state.directories.append(Directory(r.text(e["path"]), r.text(e.get("owner", "root")),
                                           r.text(e.get("group", e.get("owner", "root"))), str(e.get("mode", "0755"))))
    for e in live("files"):
        state.files.append(File(r.text(e["path"]), _file_content(e, r), r.text(e.get("owner", "root")),
                                r.text(e.get("group", e.get("owner", "root"))), str(e.get("mode", "0644")),
                                bool(e.get("secret", False)), r.notify(e)))
    for e in live("links"):
        state.links.append(Link(r.text(e["path"]), r.text(e["target"]), r.notify(e)))
    for e in live("absent"):
        state.absent.append(Absent(r.text(e["path"]), r.notify(e)))
    for e in live("ensure"):
        # stdin: inline (``stdin``, ``check_stdin``) or a template (``stdin_template``).
        stdin = r.template(e["stdin_template"]) if "stdin_template" in e else \
            r.text(e["stdin"]).encode() if "stdin" in e else None
        check_stdin = r.text(e["check_stdin"]).encode() if "check_stdin" in e else None
        state.ensures.append(Ensure(r.text(e["name"]), r.argv(e["check"]), r.argv(e["apply"]),
                                    r.text(e["output"]) if "output" in e else None, stdin, r.notify(e),
                                    check_stdin))
    for e in live("services"):
        state.services.append(Service(r.text(e["name"]), e.get("enabled"), e.get("running")))
    # Roles may share a handler name: each adds its commands (once), so
    # "restart app units" restarts exactly the units this host has.
    for handler, commands in (data.get("handlers") or {}).items():
        merged = state.handlers.setdefault(r.text(handler), [])
        merged += [step for step in map(r.handler_step, commands) if step not in merged]


def desired_state(role_names: list[str], variables: dict[str, Any], project_dir: Path | None,
                  jinja: jinja2.Environment, *, part: bool = False) -> HostState:
    """The full desired state of a host that plays ``role_names``.

    ``part``: only some of the host's roles, for a command that writes a few of their files without
    running handlers (the roles declaring those handlers are not rendered).
    """
    state = HostState()
    for name in role_order(role_names, project_dir):
        path, data = load_role(name, project_dir)
        r = Renderer(jinja, variables, path)
        if not r.condition(data):
            continue
        add_role(state, name, data, r)
    notified = {n for res in (*state.files, *state.links, *state.absent, *state.ensures) for n in res.notify}
    missing = sorted(notified - set(state.handlers))
    if missing and not part:
        raise RoleError(f"roles {', '.join(state.roles)} notify handler {missing[0]!r}, which no role declares")
    return state
