"""Reading an inventory file: YAML in, a validated inventory out, or every problem as FILE:LINE: field: reason."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from smship.contract import CONTROL, FieldProblem
from smship.inputrules import MAX_FILE_BYTES
from smship.inventory.rules import ROLES
from smship.inventory.schema import App, Environment, Inventory


class InventoryError(Exception):
    """A bad inventory: each entry of ``problems`` is one printable line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class LoadedInventory(BaseModel):
    """An inventory together with where it came from, for messages."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    path: Path
    inventory: Inventory

    @property
    def app(self) -> App:
        return self.inventory.app

    def environment(self, name: str) -> Environment:
        try:
            return self.inventory.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.inventory.environments))
            raise InventoryError([f"{self.path}: no environment {name!r} (it has: {known})"]) from None


def field_path(loc: tuple[str | int, ...]) -> str:
    """``("environments", "prod", "hosts", 2, "address")`` → ``environments.prod.hosts[2].address``."""
    text = ""
    for part in loc:
        if isinstance(part, str) and CONTROL.search(part):
            part = part.encode("unicode_escape").decode("ascii")  # a message is one line, whatever the key
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(root: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc``, as deep as it exists."""
    node, line = root, None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((value for key, value in node.value if key.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _problems(error: ValidationError, path: Path, root: yaml.Node | None) -> list[str]:
    lines = []
    for item in error.errors():
        loc = tuple(part for part in item["loc"] if not (isinstance(part, str) and part.startswith(("function-", "tagged-union"))))
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, FieldProblem):
            loc = loc + cause.subpath
            message = str(cause)
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "literal_error" and loc and loc[-2:-1] == ("roles",):
            message = f"unknown role {item['input']!r} (roles are: {', '.join(ROLES)})"
        else:
            message = item["msg"].removeprefix("Value error, ")
        line = _line_of(root, loc)
        where = f"{path}:{line}" if line else str(path)
        lines.append(f"{where}: {field_path(loc) or '(top level)'}: {message}")
    return lines


def parse(text: str, path: Path) -> Inventory:
    """Validate inventory ``text`` read from ``path`` or raise :class:`InventoryError`."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        reason = getattr(exc, "problem", None) or str(exc)
        raise InventoryError([f"{where}: not valid YAML: {reason}"]) from None
    if not isinstance(data, dict):
        raise InventoryError([f"{path}: expected a mapping with 'app' and 'environments'"])
    try:
        return Inventory.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise InventoryError(_problems(exc, path, root)) from None


def load(path: Path) -> LoadedInventory:
    """Read and validate the inventory file at ``path``."""
    try:
        raw = path.read_bytes()
        if len(raw) > MAX_FILE_BYTES:
            raise InventoryError([f"{path}: is {len(raw)} bytes; an inventory is at most {MAX_FILE_BYTES}"])
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InventoryError([f"{path}:{line}: not UTF-8 text (byte {exc.start + 1}); an inventory is a YAML file"]) from None
    except IsADirectoryError:
        raise InventoryError([f"{path}: is a directory, not an inventory file"]) from None
    except FileNotFoundError:
        raise InventoryError([f"{path}: no such inventory file (create one from inventory.example, or pass -i PATH)"]) from None
    except OSError as exc:
        raise InventoryError([f"{path}: cannot read: {exc.strerror}"]) from None
    return LoadedInventory(path=path, inventory=parse(text, path))
