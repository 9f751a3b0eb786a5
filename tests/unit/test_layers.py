"""The shape of smship's imports, read from the code by scripts/import-graph.

Four layers, each importing only the ones below it:

- the CLI (``cli``, ``tasks``) parses options and calls one command;
- commands (``deploy``, ``provision``, ``rotate``...) orchestrate steps and
  never import each other: what two commands share is a step;
- steps (``steps``: lock, survey, ship, migrate, roll...; ``engine``: roles
  to desired state to changes; ``checklist``: the production checks) act on
  a fleet and never import a command;
- foundations (values, the inventory, SSH, the host agent, the release
  build) know nothing of steps or commands.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CLI = {"cli", "tasks", "__main__"}
COMMANDS = {"backup", "deploy", "lab", "provision", "rotate", "status", "storage"}
STEPS = {"steps", "engine", "checklist"}


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
        "from smship.checklist import run\nimport smship.ssh\nfrom smship import layout\nfrom . import lock\n"
        "from smship.deploy import tiers\n")
    assert graph.graph(package) == {"deploy": {"checklist", "ssh", "layout"}}


def layer(package: str) -> int:
    return 3 if package in CLI else 2 if package in COMMANDS else 1 if package in STEPS else 0


def test_no_import_points_up_the_layers():
    edges = import_graph().graph()
    upward = sorted((a, b) for a, targets in edges.items() for b in targets if layer(b) > layer(a))
    assert upward == []


def test_commands_never_import_each_other():
    edges = import_graph().graph()
    between = sorted((a, b) for a, targets in edges.items() for b in targets if a in COMMANDS and b in COMMANDS)
    assert between == [], "share it through a step instead"


def test_the_import_graph_has_no_cycle_between_packages():
    graph = import_graph()
    assert graph.mutual_pairs(graph.graph()) == []


def test_only_the_ssh_layer_uses_fabric_or_paramiko():
    users = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "smship").rglob("*.py")
                   if any(word in path.read_text() for word in ("import fabric", "from fabric", "paramiko")))
    assert all(user.startswith("smship/ssh") for user in users), users


def _lines_with(pattern: str) -> list[str]:
    """``path:line`` of each line of smship/ matching ``pattern``, as `grep -rn` would list them."""
    found = []
    for path in sorted((ROOT / "smship").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    return found


def test_agent_requests_are_built_by_the_typed_client_alone():
    """`grep -rn '"op":' smship`: the client builds requests; the agents only read them."""
    builders = {line.rpartition(":")[0] for line in _lines_with(r'"op":')}
    assert builders == {"smship/remote/client.py"}, builders


def test_only_the_fleet_layer_tells_failures_from_answers():
    """`grep -rn 'isinstance(.*BaseException' smship`: callers read FleetResult.succeeded / .failed."""
    users = {line.rpartition(":")[0] for line in _lines_with(r"isinstance\(.*BaseException")}
    assert all(user.startswith("smship/ssh") for user in users), users


# Modules that read what a host answered (an agent's answer, or a probe's they run themselves):
# each parses it once, in the functions named, into a dataclass the rest reads by attribute.
ANSWER_PARSERS = {
    "smship/checklist/checks.py": set(),
    "smship/checklist/facts.py": set(),
    "smship/checklist/dbprobe.py": {"_database_facts"},
    "smship/storage/verify.py": {"read_round_trip"},
    "smship/backup/commands.py": set(),
    "smship/backup/info.py": set(),
    "smship/steps/lock.py": set(),
    "smship/steps/roll.py": set(),
    "smship/steps/survey.py": set(),
}


def _string_key_reads(source: str, parsers: set[str]) -> list[str]:
    """``line: key`` of each ``x["key"]`` read or ``x.get("key")`` outside the functions ``parsers``."""
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            key = None
            if isinstance(child, ast.Subscript) and isinstance(child.ctx, ast.Load) and \
                    isinstance(child.slice, ast.Constant) and isinstance(child.slice.value, str):
                key = child.slice.value
            elif isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) and \
                    child.func.attr == "get" and child.args and isinstance(child.args[0], ast.Constant) and \
                    isinstance(child.args[0].value, str):
                key = child.args[0].value
            if key is not None and function not in parsers:
                found.append(f"{child.lineno}: {key}")
            visit(child, child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function)
    visit(ast.parse(source), None)
    return found


def test_the_reader_finds_string_key_reads_outside_the_parsers():
    source = ("def parse(a):\n    return a['ok'], a.get('why')\n"
              "def judge(a):\n    data['kept'] = a\n    return a['ok'] or a.get('why', '') or a[name]\n")
    assert _string_key_reads(source, {"parse"}) == ["5: ok", "5: why"]


def test_answers_are_read_by_attribute_outside_their_parser():
    """An answer's field names stay in its parser (smship.remote.client for the agents' ops)."""
    reads = {path: found for path, parsers in ANSWER_PARSERS.items()
             if (found := _string_key_reads((ROOT / path).read_text(), parsers))}
    assert reads == {}, reads
