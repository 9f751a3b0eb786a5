"""Where the contract's directories are in the repository, refusing any that leave it.

Paths are compared as text after normalising ``..`` (never by following
symlinks), relative to the repository's top, so ``app.root: backend`` with
``frontend.dir: ../frontend`` is ``frontend`` and ``../../elsewhere`` is refused.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from smship.contract import AppContract
from smship.errors import SmshipError

# Where a front end built outside app.root lands in the release tree.
OUTSIDE_OUTPUT = "_frontend"


def output_in_release(output: str) -> str:
    """Where a front end built into ``output`` (relative to app.root) is in the release tree."""
    normal = posixpath.normpath(output)
    return OUTSIDE_OUTPUT if normal == ".." or normal.startswith("../") else normal


def inside(base: str, rel: str, field: str) -> str:
    """``base/rel`` normalised, relative to the repository's top ("" for the top itself)."""
    joined = posixpath.normpath(posixpath.join(base or ".", rel))
    if joined == ".." or joined.startswith("../") or posixpath.isabs(joined):
        raise SmshipError(f"{field}: {rel!r} leaves the repository (it resolves to {joined!r} from its top)")
    return "" if joined == "." else joined


def within(path: str, directory: str) -> str | None:
    """``path`` relative to ``directory`` when it is inside it, else ``None`` (both repository-relative)."""
    if not directory:
        return path or "."
    if path == directory:
        return "."
    if path.startswith(directory + "/"):
        return path[len(directory) + 1:]
    return None


@dataclass(frozen=True)
class AppPaths:
    """The contract's directories, each relative to the repository's top."""

    root: str                       # the Python project: the release is its content
    frontend: str | None            # the front end's directory
    output: str | None              # where its build leaves the files

    @property
    def output_in_release(self) -> str | None:
        """Where the built front end is in the release tree."""
        if self.output is None:
            return None
        return within(self.output, self.root) or OUTSIDE_OUTPUT

    @classmethod
    def of(cls, source_subdir: str, contract: AppContract) -> "AppPaths":
        root = inside(source_subdir, contract.root, "app.root")
        front = contract.frontend
        if front is None:
            return cls(root, None, None)
        directory = inside(root, front.dir, "app.frontend.dir")
        output = inside(root, front.output, "app.frontend.output")
        if output == root:
            raise SmshipError("app.frontend.output: the build's output must be a directory of its own, "
                              "not app.root itself")
        return cls(root, directory, output)
