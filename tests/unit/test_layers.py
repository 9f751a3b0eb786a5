"""The shape of smship's imports, read from the code by scripts/import-graph.

Foundations (values, the inventory, SSH, the host agent, the release build)
never import a command; the CLI layer (``cli``, ``tasks``) may import every
command.  Commands importing each other are debts listed in ``KNOWN_DEBTS``,
to be paid by moving what they share into reusable steps: a new one fails the
test, and so does a debt paid without being struck from the list.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = {"backup", "check", "deploy", "lab", "provision", "rotate", "status", "storage"}
CLI = {"cli", "tasks", "__main__"}

KNOWN_DEBTS = {
    ("backup", "deploy"), ("backup", "provision"), ("check", "deploy"), ("check", "provision"),
    ("deploy", "backup"), ("deploy", "check"), ("deploy", "provision"), ("provision", "backup"),
    ("rotate", "deploy"), ("rotate", "provision"), ("status", "deploy"), ("storage", "deploy"),
    ("storage", "provision"),
}


def import_graph():
    loader = importlib.machinery.SourceFileLoader("import_graph", str(ROOT / "scripts" / "import-graph"))
    spec = importlib.util.spec_from_loader("import_graph", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_reader_sees_imports_of_every_form(tmp_path):
    graph = import_graph()
    package = tmp_path / "smship"
    (package / "deploy").mkdir(parents=True)
    (package / "deploy" / "__init__.py").write_text("")
    (package / "deploy" / "roll.py").write_text(
        "from smship.check import run\nimport smship.ssh\nfrom smship import layout\nfrom . import lock\n"
        "from smship.deploy import tiers\n")
    assert graph.graph(package) == {"deploy": {"check", "ssh", "layout"}}


def test_no_foundation_imports_a_command_or_the_cli():
    edges = import_graph().graph()
    upward = sorted((a, b) for a, targets in edges.items() for b in targets
                    if a not in COMMANDS | CLI and b in COMMANDS | CLI)
    assert upward == []


def test_commands_import_each_other_only_where_a_debt_is_known():
    edges = import_graph().graph()
    between = {(a, b) for a, targets in edges.items() for b in targets if a in COMMANDS and b in COMMANDS}
    assert between - KNOWN_DEBTS == set(), "a new import between commands: share it through a step instead"
    assert KNOWN_DEBTS - between == set(), "a debt was paid: strike it from KNOWN_DEBTS"


def test_only_the_ssh_layer_uses_fabric_or_paramiko():
    users = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "smship").rglob("*.py")
                   if any(word in path.read_text() for word in ("import fabric", "from fabric", "paramiko")))
    assert all(user.startswith("smship/ssh") for user in users), users
