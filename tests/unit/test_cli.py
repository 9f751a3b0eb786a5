"""The smship program as a user meets it: help, errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from smship.cli import build_namespace, rewrite_argv

ROOT = Path(__file__).resolve().parents[2]


def smship(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smship", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def test_help_lists_every_command():
    result = smship("--help")
    assert result.returncode == 0
    for name in ("init", "provision", "build", "deploy", "rollback", "releases", "rotate-secret", "check", "status", "logs"):
        assert f"\n  {name} " in result.stdout, name


def test_command_help_explains_its_arguments():
    result = smship("deploy", "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("Usage: smship deploy ENV [options]")
    assert "Environment from the inventory" in result.stdout


def test_argv_rewrites_for_help_and_subcollections():
    ns = build_namespace()
    assert rewrite_argv(["smship", "deploy", "prod", "-h"], ns) == ["smship", "--help", "deploy"]
    assert rewrite_argv(["smship", "deploy", "prod", "--limit", "web1"], ns) == ["smship", "deploy", "prod", "--limit", "web1"]
    assert rewrite_argv(["smship", "--version"], ns) == ["smship", "--version"]


def test_a_bad_inventory_fails_before_anything_with_one_line_per_problem(tmp_path, capsys):
    data = yaml.safe_load((ROOT / "inventory.example").read_text())
    data["environments"]["prod"]["hosts"][0]["roles"] = ["web", "beat"]
    (tmp_path / "smship.yml").write_text(yaml.safe_dump(data))
    from smship.tasks.base import env_command
    from invoke import Collection, Program

    @env_command()
    def probe(ctx):
        """A command that would touch hosts."""
        raise AssertionError("must not run with a bad inventory")

    program = Program(namespace=Collection(probe), binary="smship")
    import pytest
    with pytest.raises(SystemExit) as exit_info:
        program.run(["smship", "probe", "prod", "-i", str(tmp_path / "smship.yml")])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(str(tmp_path / "smship.yml") + ":")
    assert "environments.prod.hosts[2].roles: a second 'beat' host" in lines[0]


def test_a_command_group_lists_its_commands():
    for argv in (("lab",), ("lab", "--help"), ("lab", "-h")):
        result = smship(*argv)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("Usage: smship lab COMMAND [options]")
        for name in ("up", "down", "status", "stop", "start", "kill", "partition", "heal"):
            assert f"\n  {name} " in result.stdout, (argv, name)
    assert smship("lab", "kill", "--help").stdout.startswith("Usage: smship lab kill HOST [options]")


def test_storage_and_backup_groups_list_their_commands_and_explain_options():
    for group, names in (("storage", ("setup", "verify")), ("backup", ("now", "list", "verify", "restore"))):
        result = smship(group)
        assert result.returncode == 0, result.stderr
        for name in names:
            assert f"\n  {name} " in result.stdout, (group, name)
    restore = smship("backup", "restore", "--help").stdout
    for option in ("--to", "--release", "--yes"):
        assert option in restore
    assert "--restart-db" in smship("provision", "--help").stdout


def test_backup_commands_without_a_backup_section_say_what_to_add(tmp_path):
    import shutil
    shutil.copy(ROOT / "inventory.example", tmp_path / "smship.yml")
    result = smship("backup", "list", "staging", "-i", str(tmp_path / "smship.yml"))
    assert result.returncode == 1
    assert "environments.staging.backup: not set" in result.stderr


def test_global_options_work_before_the_command_too(tmp_path):
    import shutil
    shutil.copy(ROOT / "inventory.example", tmp_path / "smship.yml")
    inventory = str(tmp_path / "smship.yml")
    for argv in (("-i", inventory, "backup", "list", "staging"),
                 (f"--inventory={inventory}", "-o", "text", "backup", "list", "staging"),
                 ("-o", "json", "--inventory", inventory, "backup", "list", "staging")):
        result = smship(*argv)
        assert result.returncode == 1, (argv, result.stderr)
        assert "environments.staging.backup: not set" in result.stderr, (argv, result.stderr)
    ns = build_namespace()
    assert rewrite_argv(["smship", "-i", "x.yml", "provision", "lab"], ns) == \
        ["smship", "provision", "lab", "-i", "x.yml"]
    assert rewrite_argv(["smship", "-i", "x.yml", "lab", "up", "-h"], ns) == ["smship", "--help", "lab.up"]
