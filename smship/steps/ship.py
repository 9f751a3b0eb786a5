"""Shipping a release to hosts: rsync, hard links, an offline virtualenv.

Per host, in parallel: the release tree goes to ``releases/<id>`` with
unchanged files hard-linked from the live release (a one-file change ships
one file), the wheelhouse to ``shared/wheels/<deps_id>`` (once per lock
file, not per release), the virtualenv is built from it without network
access (once per lock file too), and the built front end joins the static
root that nginx serves.  Only then is the release marked complete; a host
never switches to a release that is not.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from smship.command import Command, in_turn, script
from smship.errors import SmshipError
from smship.layout import Layout
from smship.release.hostcmds import COMPLETE_MARKER
from smship.ssh import Fleet, Target

# Made on the host after shipping; a re-ship must not delete them.
HOST_ONLY = (COMPLETE_MARKER, ".venv")


@dataclass
class Shipped:
    bytes_sent: int
    files: int


def finish_command(layout: Layout, release_id: str, venv_dir: str) -> Command:
    """Link the release to its virtualenv and mark it complete."""
    release = layout.release(release_id)
    return script('ln -sfn "$2" "$1/.venv" && touch "$1/$3"', args=(release, venv_dir, COMPLETE_MARKER),
                  sudo=True, description=f"finish release {release_id}")


def tree_bytes(path: Path) -> int:
    """What a release takes on a host at most (before unchanged files are hard-linked)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def without_room(release, free_bytes: dict[str, int]) -> dict[str, str]:
    """Hosts whose releases volume could not hold the release, each with the reason in words."""
    needed = tree_bytes(release.path)
    return {name: f"no space for the release: {free} bytes free, the release is {needed} bytes"
            for name, free in free_bytes.items() if free < needed}


def frontend_output(release) -> Path | None:
    """The built front end inside the release tree, or ``None`` when the release has none.

    Releases built before ``output`` was recorded kept it in ``static/dist``.
    """
    built = release.manifest.get("frontend")
    if not built:
        return None
    output = release.path / built.get("output", "static/dist")
    return output if output.is_dir() else None


def transfer(fleet: Fleet, target: Target, layout: Layout, release, previous: str | None,
             frontend_url: str | None) -> Shipped:
    """rsync the release tree, its wheelhouse and, to a web host (``frontend_url`` set), its built front end.

    The three are independent, so they go at once: a host waits for the longest, not for all in turn.
    """
    link_dest = layout.release(previous) if previous and previous != release.id else None
    jobs = {"tree": lambda: fleet.rsync(target, release.path, layout.release(release.id), sudo=True,
                                        chown="root:root", excludes=HOST_ONLY, link_dest=link_dest),
            "wheels": lambda: fleet.rsync(target, release.wheels_path, f"{layout.wheels}/{release.deps_id}",
                                          sudo=True, chown="root:root")}
    output = frontend_output(release)
    if frontend_url is not None and output is not None:
        # No --delete: pages rendered by hosts still on the old release keep
        # asking for the old hashed assets while the roll is under way.
        jobs["frontend"] = lambda: fleet.rsync(target, output, layout.frontend_dir(frontend_url), sudo=True,
                                               chown="root:root", delete=False)
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = {name: pool.submit(job) for name, job in jobs.items()}
        done = {name: future.result() for name, future in results.items()}
    for name, result in done.items():
        if not result.ok:
            if name == "frontend":
                raise SmshipError(f"{result.summary()}; nginx serves app.frontend.url from there, a directory "
                                  "'smship provision' makes after app.frontend changes")
            raise SmshipError(result.summary())
    return Shipped(sum(t.bytes_sent for t in done.values()), sum(t.files_transferred for t in done.values()))


def install(fleet: Fleet, target: Target, layout: Layout, release, venv_commands: list[Command],
            venv_dir: str) -> None:
    """Build the virtualenv (once per lock file), link it, and only then mark the release complete: one
    exchange with the host."""
    finish = finish_command(layout, release.id, venv_dir)
    command = in_turn(*venv_commands, finish, description=f"virtualenv {release.deps_id}, then {finish.description}")
    result = fleet.run(target, command, timeout=900)
    if not result.ok:
        raise SmshipError(result.summary())
