"""What the app's Python code says, read with ``ast`` (nothing is imported or run)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

# Directories whose code is not the app's: tests, vendored environments, builds.
SKIPPED_DIRS = frozenset({"tests", "test", "node_modules", ".venv", "venv", ".git", "__pycache__",
                          "build", "dist", "site-packages", ".tox", ".mypy_cache"})
ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{2,}")
DATABASE_URL = re.compile(r"(postgresql(?:\+[a-z0-9]+)?|postgres)://")
# The app kinds smship runs, by the class whose instance each one is.
KINDS = {"FastAPI": "asgi", "Celery": "celery"}


@dataclass(frozen=True)
class Spot:
    path: Path
    line: int


@dataclass
class CodeFacts:
    # kind -> [(attribute, where, how it is made when through a factory)]
    apps: dict[str, list[tuple[str, Spot, str | None]]] = field(default_factory=lambda: {"asgi": [], "celery": []})
    beat_schedules: list[Spot] = field(default_factory=list)
    env_names: dict[str, Spot] = field(default_factory=dict)
    database_urls: list[tuple[str, Spot]] = field(default_factory=list)
    # (URL path, expectation: "status", "true" or None when the handler says nothing, where)
    health_routes: list[tuple[str, str | None, Spot]] = field(default_factory=list)


def python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if not SKIPPED_DIRS.intersection(path.relative_to(root).parts[:-1]):
            yield path


def module_of(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def _called(node: ast.AST) -> str | None:
    """The name a call calls: ``FastAPI`` for ``FastAPI(...)`` and ``fastapi.FastAPI(...)``."""
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            return node.func.id
        if isinstance(node.func, ast.Attribute):
            return node.func.attr
    return None


def _strings(node: ast.AST) -> Iterator[ast.Constant]:
    for child in ast.walk(node):
        if isinstance(child, ast.Constant) and isinstance(child.value, str):
            yield child


def _envish(node: ast.AST) -> bool:
    """A mapping that holds the environment: os.environ, environ, env, environment..."""
    if isinstance(node, ast.Attribute):
        return node.attr == "environ"
    return isinstance(node, ast.Name) and "env" in node.id.lower()


def read(root: Path) -> CodeFacts:
    trees = {}
    for path in python_files(root):
        try:
            trees[path] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
    factories = _factories(trees)
    facts = CodeFacts()
    for path, tree in trees.items():
        _apps(facts, path, tree, root, factories)
        for node in ast.walk(tree):
            _beat(facts, path, node)
            _env_read(facts, path, node)
            _health_route(facts, path, node)
            if isinstance(node, ast.ClassDef):
                _settings_class(facts, path, node)
        for constant in _strings(tree):
            match = DATABASE_URL.match(constant.value)
            if match:
                facts.database_urls.append((match.group(1), Spot(path, constant.lineno)))
    return facts


def _factories(trees: dict[Path, ast.Module]) -> dict[str, tuple[str, Path]]:
    """Top-level functions that make a FastAPI or Celery app (``create_app``), by name."""
    found = {}
    for path, tree in trees.items():
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for call in ast.walk(node):
                    kind = KINDS.get(_called(call) or "")
                    if kind:
                        found[node.name] = (kind, path)
    return found


def _apps(facts: CodeFacts, path: Path, tree: ast.Module, root: Path, factories) -> None:
    """Module-level ``name = FastAPI(...)`` / ``name = Celery(...)``, directly or through a factory."""
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if len(targets) != 1 or not isinstance(targets[0], ast.Name) or node.value is None:
            continue
        called = _called(node.value) or ""
        kind, via = KINDS.get(called), None
        if kind is None and called in factories:
            kind, factory_path = factories[called]
            via = f"made by {called}() in {factory_path.relative_to(root).as_posix()}"
        if kind:
            facts.apps[kind].append((targets[0].id, Spot(path, node.lineno), via))


def _beat(facts: CodeFacts, path: Path, node: ast.AST) -> None:
    """A beat schedule: ``beat_schedule=`` / ``conf.beat_schedule =`` / ``{"beat_schedule": ...}`` / add_periodic_task."""
    hit = (isinstance(node, ast.keyword) and node.arg == "beat_schedule") \
        or (isinstance(node, ast.Attribute) and node.attr in ("beat_schedule", "add_periodic_task")) \
        or (isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "beat_schedule" for k in node.keys))
    if hit:
        line = getattr(node, "lineno", None) or getattr(node.value, "lineno", 0)
        facts.beat_schedules.append(Spot(path, line))


def _env_read(facts: CodeFacts, path: Path, node: ast.AST) -> None:
    names: list[ast.AST] = []
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault") and _envish(func.value):
            names = node.args[:1]
        elif _called(node) == "getenv":
            names = node.args[:1]
        elif any(_envish(arg) for arg in node.args):
            names = node.args  # a helper given the environment and a name: _int(env, "POOL_SIZE", 10)
    elif isinstance(node, ast.Subscript) and _envish(node.value):
        names = [node.slice]
    for name in names:
        if isinstance(name, ast.Constant) and isinstance(name.value, str) and ENV_NAME.fullmatch(name.value):
            facts.env_names.setdefault(name.value, Spot(path, name.lineno))


def _settings_class(facts: CodeFacts, path: Path, node: ast.ClassDef) -> None:
    """pydantic-settings: each field of a BaseSettings class is read as PREFIX + NAME."""
    if not any("BaseSettings" in ast.unparse(base) for base in node.bases):
        return
    prefix = ""
    for item in ast.walk(node):
        if isinstance(item, ast.keyword) and item.arg == "env_prefix" and isinstance(item.value, ast.Constant):
            prefix = str(item.value.value)
        elif isinstance(item, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "env_prefix" for t in item.targets) \
                and isinstance(item.value, ast.Constant):
            prefix = str(item.value.value)
    for item in node.body:
        if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.target.id != "model_config":
            name = (prefix + item.target.id).upper()
            alias = _alias(item.value)
            if ENV_NAME.fullmatch(alias or name):
                facts.env_names.setdefault(alias or name, Spot(path, item.lineno))


def _alias(value: ast.AST | None) -> str | None:
    if isinstance(value, ast.Call) and _called(value) == "Field":
        for keyword in value.keywords:
            if keyword.arg in ("alias", "validation_alias") and isinstance(keyword.value, ast.Constant):
                return str(keyword.value.value).upper()
    return None


def _health_route(facts: CodeFacts, path: Path, node: ast.AST) -> None:
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return
    for decorator in node.decorator_list:
        if not (_called(decorator) in ("get", "api_route") and decorator.args
                and isinstance(decorator.args[0], ast.Constant) and isinstance(decorator.args[0].value, str)):
            continue
        route = decorator.args[0].value
        if not re.search(r"health|live|ready", route):
            continue
        said = {c.value for c in _strings(node)}
        returns_true = any(isinstance(n, ast.Return) and isinstance(n.value, ast.Constant) and n.value.value is True
                           for n in ast.walk(node))
        expect = "true" if "true" in said or returns_true else "status" if said & {"status", "healthy", "alive"} else None
        facts.health_routes.append((route, expect, Spot(path, decorator.lineno)))
