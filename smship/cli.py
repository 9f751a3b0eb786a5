"""The ``smship`` program: an Invoke Program over smship's own commands."""

from __future__ import annotations

import faulthandler
import inspect
import signal
import sys

from invoke import Collection, Program

from smship import __version__
from smship.process_exit import run_then_exit
from smship.lab import tasks as lab_tasks
from smship.tasks.build import build
from smship.tasks.check import check, logs
from smship.tasks.deploy import deploy, releases, rollback, unlock
from smship.tasks.init import init
from smship.tasks.provision import provision
from smship.tasks.secrets import rotate_secret
from smship.tasks.status import status
from smship.tasks import backup as backup_tasks
from smship.tasks import storage as storage_tasks

DESCRIPTION = """\
smship deploys smpy web apps (FastAPI + Vite, Celery, Postgres, Redis) to your
own hosts over SSH: provision, deploy with migrations first and a health-gated
rolling restart, roll back, rotate secrets, and rehearse it all on a local lab.
"""


def build_namespace() -> Collection:
    ns = Collection()
    for command in (init, provision, build, deploy, rollback, releases, unlock, status, check, logs, rotate_secret):
        ns.add_task(command)
    ns.add_collection(storage_tasks.ns)
    ns.add_collection(backup_tasks.ns)
    ns.add_collection(lab_tasks.ns)
    return ns


class SmshipProgram(Program):
    """Invoke's Program with smship's command line shape.

    Users type ``smship lab up`` and ``smship deploy --help``; Invoke wants
    ``lab.up`` and ``--help deploy`` (a required positional would otherwise
    swallow ``--help`` as its value), so argv is rewritten before parsing.
    """

    def normalize_argv(self, argv) -> None:
        super().normalize_argv(argv)
        self.argv = rewrite_argv(self.argv, self.namespace)

    def print_task_help(self, name: str) -> None:
        ctx = self.parser.contexts[name]
        positional = " ".join(arg.name.upper() for arg in ctx.positional_args)
        print(f"Usage: {self.binary} {name.replace('.', ' ')} {positional} [options]".replace("  ", " "))
        print("")
        doc = inspect.getdoc(self.collection[name]) or ""
        for line in doc.splitlines():
            print(f"  {line}" if line.strip() else "")
        print("\nOptions:")
        self.print_columns(ctx.help_tuples())

    def print_help(self) -> None:
        print(f"Usage: {self.binary} COMMAND ENV [options]\n")
        print(DESCRIPTION)
        self.list_tasks()
        print(f"Run '{self.binary} COMMAND --help' for a command's options; "
              f"'{self.binary} --version' prints the version.")


program = SmshipProgram(namespace=build_namespace(), version=__version__, name="smship", binary="smship")


# Options every environment command takes; users also put them before the
# command (``smship -i FILE deploy prod``), where Invoke knows none of them.
GLOBAL_OPTIONS = ("-i", "--inventory", "-o", "--output")


def split_leading_globals(rest: list[str]) -> tuple[list[str], list[str]]:
    """(global options given before the command, the rest of argv)."""
    moved = []
    while rest:
        if rest[0] in GLOBAL_OPTIONS and len(rest) >= 2:
            moved, rest = moved + rest[:2], rest[2:]
        elif "=" in rest[0] and rest[0].partition("=")[0] in GLOBAL_OPTIONS:
            moved, rest = moved + rest[:1], rest[1:]
        else:
            break
    return moved, rest


def rewrite_argv(argv: list[str], namespace: Collection) -> list[str]:
    """``smship lab up -h`` → ``smship --help lab.up``; ``smship -i F deploy prod`` → ``smship deploy prod -i F``."""
    binary, *rest = argv
    moved, rest = split_leading_globals(rest)
    if len(rest) >= 2 and rest[0] in namespace.collections and not rest[1].startswith("-"):
        rest = [f"{rest[0]}.{rest[1]}", *rest[2:]]
    if rest and not rest[0].startswith("-") and any(a in ("-h", "--help") for a in rest[1:]):
        return [binary, "--help", rest[0]]
    return [binary, *rest, *moved]


def collection_help(argv: list[str], namespace: Collection) -> str | None:
    """The help of a command group (``smship lab``, ``smship lab --help``), or None for other argv."""
    rest = argv[1:]
    if not rest or rest[0] not in namespace.collections or any(not a.startswith("-") for a in rest[1:]):
        return None
    if rest[1:] and not set(rest[1:]) <= {"-h", "--help"}:
        return None
    group = namespace.collections[rest[0]]
    lines = [f"Usage: smship {rest[0]} COMMAND [options]", ""]
    width = max(len(name) for name in group.tasks)
    for name in sorted(group.tasks):
        summary = (inspect.getdoc(group.tasks[name]) or "").splitlines()[0]
        lines.append(f"  {name:<{width}}  {summary}")
    lines += ["", f"Run 'smship {rest[0]} COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main() -> None:
    # `smship status prod | head` should end quietly, like any Unix tool.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # `kill -USR1 PID` prints where each of smship's threads is, for a run that seems stuck. Code
    # locations only: no values, so no secret.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    group_help = collection_help(sys.argv, program.namespace)
    if group_help is not None:
        print(group_help)
        raise SystemExit(0)
    # The process ends here, without the interpreter's teardown (see smship.process_exit).
    run_then_exit(program.run)
