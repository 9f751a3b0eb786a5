"""Release steps: the migration, then the release commands, once, on one host, before any restart.

Each runs through ``systemd-run`` with the same user, EnvironmentFile and
sandbox as the app's units, so it sees exactly the settings the app will (but
for a database URL past the pooler, when there is one), and no secret ever
appears on a command line. What runs is the app's declaration
(``app.migrate``, ``app.release_commands``); the default is smpy's
``alembic upgrade head`` in ``host/``.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass
from urllib.parse import quote

from smship.ahead import to_its_end
from smship.command import Command, cmd
from smship.context import EnvContext
from smship.contract import AppContract
from smship.errors import SmshipError
from smship.layout import Layout
from smship.templating import sandbox_properties

# A command's first word is looked up in the release's virtualenv first
# ("alembic", "python -m app.seed"), then in the system's directories.
_SEARCH = "{venv}:/usr/local/bin:/usr/bin:/bin"


def transient_unit_properties(layout: Layout, workdir: str, direct: bool = False) -> list[str]:
    """What a transient unit of the app is: its user, env file and the app units' sandbox.

    ``direct``: the release steps' settings follow the env file (when provisioning
    wrote them: the "-" lets a fleet without a pooler have none).
    """
    files = [f"EnvironmentFile={layout.env_file}"] + ([f"EnvironmentFile=-{layout.direct_env_file}"] if direct else [])
    return [f"User={layout.user}", f"Group={layout.user}", *files,
            f"WorkingDirectory={workdir}", f"ReadWritePaths={layout.uploads} {layout.logs}", *sandbox_properties()]


def in_app_environment(layout: Layout, workdir: str, *argv: str, description: str = "", direct: bool = False,
                       stdin: bytes | None = None) -> Command:
    """``argv`` run as the app user with the app's env file, in the app units' sandbox, waiting for it to finish."""
    properties = [word for p in transient_unit_properties(layout, workdir, direct) for word in ("-p", p)]
    return cmd("systemd-run", "--quiet", "--wait", "--pipe", "--collect", "--service-type=exec", *properties,
               *argv, sudo=True, stdin=stdin, description=description or " ".join(argv))


def app_python_program(layout: Layout, workdir: str, python: str, program: str, *args: str,
                       description: str) -> Command:
    """``program`` run by ``python`` as in :func:`in_app_environment`. It is read from stdin: on the
    command line, sudo and systemd would write all of it to the host's journal on every run."""
    return in_app_environment(layout, workdir, python, "-", *args, stdin=program.encode(), description=description)


def in_release(layout: Layout, release_id: str, cwd: str, words: list[str], description: str) -> Command:
    """``words`` (a declared command) run in ``cwd`` of the release, the release's virtualenv first on PATH.

    ``sh -c 'exec "$@"'`` only finds the program on that PATH: the words
    stay arguments, never shell syntax.
    """
    release = layout.release(release_id)
    workdir = posixpath.normpath(posixpath.join(release, cwd))
    return in_app_environment(layout, workdir, "/usr/bin/env", f"PATH={_SEARCH.format(venv=release + '/.venv/bin')}",
                              "/bin/sh", "-c", 'exec "$@"', "sh", *words, description=description, direct=True)


@dataclass(frozen=True)
class ReleaseStep:
    """One command of the release: what to call it in messages, and how it runs."""

    kind: str          # "migration" or "release command"
    words: tuple[str, ...]
    command: Command

    @property
    def shown(self) -> str:
        return " ".join(self.words)


def release_steps(app: AppContract, layout: Layout, release_id: str) -> list[ReleaseStep]:
    """The migration (unless ``app.migrate`` is false), then each release command in the release's root."""
    steps = []
    if app.migrate is not None:
        words = tuple(app.migrate.command)
        steps.append(ReleaseStep("migration", words, in_release(
            layout, release_id, app.migrate.cwd, list(words), f"{' '.join(words)} ({release_id})")))
    for words in app.release_commands:
        steps.append(ReleaseStep("release command", tuple(words), in_release(
            layout, release_id, ".", list(words), f"{' '.join(words)} ({release_id})")))
    return steps


def uses_alembic(app: AppContract) -> bool:
    """Whether the declared migration is alembic's (``alembic ...`` or ``python -m alembic ...``)."""
    if app.migrate is None:
        return False
    words = app.migrate.command
    return posixpath.basename(words[0]) == "alembic" or (len(words) > 2 and words[1:3] == ["-m", "alembic"])


def current_revision_command(app: AppContract, layout: Layout, release_id: str) -> Command:
    """``alembic current`` of ``release_id``, where its migration runs (only for an alembic migration)."""
    assert app.migrate is not None
    return in_release(layout, release_id, app.migrate.cwd, ["alembic", "current"],
                      f"alembic current ({release_id})")


def run_release_steps(ctx: EnvContext, fleet, target, steps) -> str | None:
    """The migration and release commands on ``target``, in order; what failed, or None.

    Their output is shown on failure with every secret value the backend
    holds masked: a command may print its settings.
    """
    report = ctx.reporter
    if not steps:
        report.step("no migration or release command declared (app.migrate, app.release_commands)")
        return None
    report.step(("migrating the database once" if steps[0].kind == "migration" else "running the release commands once")
                + f", from {target.name}")
    for step in steps:
        began = time.monotonic()
        # Ctrl-C waits for the step under way: stopped halfway, or left running on the host after the
        # lock is given back, it could meet the next deploy's.
        waiting = (f"interrupted: waiting for the {step.kind} under way on {target.name} to end ({step.shown}); "
                   "no host will be restarted (Ctrl-C again to stop waiting: it then goes on there without smship)")
        result, interrupted = to_its_end(lambda: fleet.run(target, step.command, timeout=1800),
                                         "smship-release-step", lambda: report.warn(waiting))
        if not result.ok:
            report.host(target.name, "failed", f"{step.shown} failed ({step.kind}); no host was restarted",
                        time.monotonic() - began)
            masked = masking(ctx)
            for line in (result.stderr or result.stdout or result.error or "").strip().splitlines()[-15:]:
                report.info(masked(line))
            if interrupted:
                raise KeyboardInterrupt
            return "migration" if step.kind == "migration" else f"release command '{step.shown}'"
        report.host(target.name, "changed", f"{step.kind}: {step.shown}", time.monotonic() - began)
        if interrupted:
            raise KeyboardInterrupt
    return None


def masking(ctx: EnvContext):
    """A function that replaces every secret value of the environment in a text by '***'."""
    try:
        values = ctx.secrets.values()
    except SmshipError:
        values = []
    return masker(values)


def masker(values):
    """Replaces each of ``values`` in a text by '***', also as quoted in a URL (passwords in the env file's URLs)."""
    forms = {form for v in values for form in (v, quote(v, safe=""))}
    # Longest first, so a value containing another is masked whole; short ones would mask ordinary words.
    hidden = sorted((v for v in forms if len(v) >= 6), key=len, reverse=True)

    def mask(text: str) -> str:
        for value in hidden:
            text = text.replace(value, "***")
        return text
    return mask
