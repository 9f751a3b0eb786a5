"""Which lock pins the app's dependencies, and its pinned requirement lines.

Looked for, in order: ``app.lock`` when the inventory names one; ``uv.lock``
in the Python project (``app.root``); ``uv.lock`` of the uv workspace that
has the project as a member (its root may be any directory above, up to the
repository's top); ``pylock.toml``; a pinned ``requirements.txt``.

Files are read through a :class:`~smship.release.source.RepoFiles` view, so
a build of an older commit reads that commit's lock, not the working tree's.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import posixpath
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from smship.errors import SmshipError
from smship.release import proc
from smship.release.cachedir import keep_json
from smship.release.files import sha256_bytes
from smship.release.source import RepoFiles

UV_LOCK = "uv.lock"
PYLOCK = "pylock.toml"
REQUIREMENTS_TXT = "requirements.txt"
# uv exports kept (smship.release.locks._uv_export): one per lock a machine builds, and its recent changes.
EXPORTS_KEPT = 64


@dataclass(frozen=True)
class Lock:
    kind: str                   # "uv", "pylock" or "requirements"
    path: str                   # the lock, relative to the repository's top
    package: str | None = None  # a uv workspace member: the project's name in the workspace
    project: str = ""           # the Python project (app.root), relative to the repository's top

    def describe(self) -> str:
        member = f" (workspace member {self.package})" if self.package else ""
        return f"{self.path}{member}"


def _join(*parts: str) -> str:
    joined = posixpath.normpath(posixpath.join(*[p for p in parts if p]))
    return "" if joined == "." else joined


def _kind_of(name: str) -> str:
    if name == UV_LOCK:
        return "uv"
    if name == PYLOCK or (name.startswith("pylock.") and name.endswith(".toml")):
        return "pylock"
    return "requirements"


def find_lock(files: RepoFiles, root: str, declared: str | None = None) -> Lock:
    """The lock of the Python project at ``root`` (relative to the repository's top)."""
    if declared is not None:
        path = _join(root, declared)
        if path == ".." or path.startswith("../"):
            raise SmshipError(f"app.lock {declared!r} leaves the repository")
        if not files.exists(path):
            raise SmshipError(f"app.lock: {path} is not in {files.describe()}")
        kind = _kind_of(posixpath.basename(path))
        package = _project_name(files, root) if kind == "uv" and posixpath.dirname(path) != root else None
        return Lock(kind, path, package, root)

    looked: list[str] = []
    own = _join(root, UV_LOCK)
    looked.append(own)
    if files.exists(own):
        return Lock("uv", own, project=root)
    workspace = _workspace_of(files, root, looked)
    if workspace is not None:
        return workspace
    for name, kind in ((PYLOCK, "pylock"), (REQUIREMENTS_TXT, "requirements")):
        path = _join(root, name)
        looked.append(path)
        if files.exists(path):
            return Lock(kind, path, project=root)
    raise SmshipError(f"no lock for the Python project at {root or '.'} in {files.describe()}; looked for "
                      f"{'; '.join(looked)}. Run 'uv lock' and commit uv.lock, or name the lock in app.lock")


def _workspace_of(files: RepoFiles, root: str, looked: list[str]) -> Lock | None:
    """The uv workspace above ``root`` that lists it as a member, if it has a uv.lock."""
    directory = root
    while directory:
        directory = posixpath.dirname(directory)
        pyproject = _join(directory, "pyproject.toml")
        looked.append(f"{_join(directory, UV_LOCK)} (a uv workspace with {root} as a member)")
        workspace = _toml(files, pyproject).get("tool", {}).get("uv", {}).get("workspace")
        if not isinstance(workspace, dict):
            continue
        member = posixpath.relpath(root, directory or ".")
        if not _is_member(member, workspace):
            continue
        lock = _join(directory, UV_LOCK)
        if not files.exists(lock):
            raise SmshipError(f"{root} is a member of the uv workspace at {directory or '.'}, which has no "
                              f"{UV_LOCK}: run 'uv lock' there and commit it")
        return Lock("uv", lock, _project_name(files, root), root)
    return None


def _is_member(member: str, workspace: dict) -> bool:
    def matches(patterns) -> bool:
        return any(isinstance(p, str) and fnmatch.fnmatchcase(member, posixpath.normpath(p))
                   for p in patterns or [])
    return matches(workspace.get("members")) and not matches(workspace.get("exclude"))


def _project_name(files: RepoFiles, root: str) -> str:
    name = _toml(files, _join(root, "pyproject.toml")).get("project", {}).get("name")
    if not isinstance(name, str) or not name:
        raise SmshipError(f"{_join(root, 'pyproject.toml')}: [project] name is needed to export a uv workspace "
                          "member's dependencies")
    return name


def _toml(files: RepoFiles, path: str) -> dict:
    data = files.read(path)
    if data is None:
        return {}
    try:
        return tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SmshipError(f"{path}: cannot parse ({exc})") from None


def _top_level(files: RepoFiles, path: str) -> dict:
    """The keys of a TOML file's top level: they come before its first table, and a lock file's tables
    (thousands of lines of packages) take longer to parse than the build's other work. When the text
    before the first line that opens with ``[`` is not TOML on its own, the whole file is parsed."""
    data = files.read(path)
    if data is None:
        return {}
    head = re.split(rb"^\[", data, maxsplit=1, flags=re.M)[0]
    try:
        return tomllib.loads(head.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return _toml(files, path)


def requires_python(files: RepoFiles, lock: Lock) -> tuple[str | None, str]:
    """The lock's ``requires-python`` (uv.lock and pylock.toml carry it), else the
    project's ``pyproject.toml``'s; with the file it came from."""
    if lock.kind in ("uv", "pylock"):
        wanted = _top_level(files, lock.path).get("requires-python")
        if wanted:
            return wanted, lock.path
    pyproject = _join(lock.project, "pyproject.toml")
    return _toml(files, pyproject).get("project", {}).get("requires-python"), pyproject


def requirement_lines(files: RepoFiles, lock: Lock, scratch: Path, memo_dir: Path | None = None) -> list[str]:
    """Pinned requirement lines (with markers) of the app's non-dev dependencies; ``memo_dir``: where
    a uv lock's export is kept, by what it read and which uv read it, so an unchanged lock is not
    exported again."""
    if lock.kind == "uv":
        return _uv_export(files, lock, scratch, memo_dir)
    text = (files.read(lock.path) or b"").decode()
    if lock.kind == "pylock":
        return _pylock_lines(text, lock.path)
    return _requirements_lines(text, lock.path)


def uv_command() -> list[str]:
    """``uv`` from PATH, else ``python -m uv`` if the uv package is installed here."""
    found = shutil.which("uv")
    if found:
        return [found]
    if importlib.util.find_spec("uv") is None:
        raise SmshipError("uv is needed to export uv.lock: install it (pip install uv)")
    return [sys.executable, "-m", "uv"]


def _uv_identity(command: list[str]) -> list:
    """What tells one uv from another without running it: its program's (or module's) size and times."""
    where = command[0] if len(command) == 1 else importlib.util.find_spec("uv").origin
    info = Path(where).stat()
    return [*command, where, info.st_size, info.st_mtime_ns, info.st_ctime_ns]


def _uv_export(files: RepoFiles, lock: Lock, scratch: Path, memo_dir: Path | None = None) -> list[str]:
    # A frozen export reads only the lock, the workspace's pyproject.toml and
    # the member's: those are copied out of the commit, nothing else.
    top = posixpath.dirname(lock.path)
    read = {rel: files.read(rel) for rel in sorted({lock.path, _join(top, "pyproject.toml"),
                                                    _join(lock.project, "pyproject.toml")})}
    command = uv_command()
    options = ["export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project", "--no-header",
               "--no-annotate", "--offline"]
    member = ["--package", lock.package] if lock.package else []
    memo = None
    if memo_dir is not None:
        key = json.dumps([_uv_identity(command), options, member, top,
                          {rel: None if data is None else sha256_bytes(data) for rel, data in read.items()}])
        memo = memo_dir / f"{sha256_bytes(key.encode())[:32]}.json"
        try:
            return _export_lines(json.loads(memo.read_text()), lock.path)
        except (OSError, ValueError, TypeError):
            pass
    for rel, data in read.items():
        if data is not None:
            target = scratch / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    done = proc.run([*command, *options, "--directory", str(scratch / top), *member],
                    env={"UV_NO_PROGRESS": "1", "UV_PYTHON_DOWNLOADS": "never"}, what=f"uv export ({lock.path})")
    exported = done.stdout.decode().splitlines()
    lines = _export_lines(exported, lock.path)
    if memo is not None:
        _remember_export(memo, exported)
    return lines


def _remember_export(memo: Path, exported: list[str]) -> None:
    """Kept for the next build; the oldest exports go beyond EXPORTS_KEPT."""
    if not keep_json(memo, exported):
        return
    try:
        kept = sorted(memo.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in kept[EXPORTS_KEPT:]:
            old.unlink()
    except OSError:
        pass    # removed by another build meanwhile


def _export_lines(exported: list[str], where: str) -> list[str]:
    """The requirement lines of ``uv export``'s output (its lines)."""
    if not isinstance(exported, list) or not all(isinstance(line, str) for line in exported):
        raise TypeError("an export is a list of lines")
    lines = []
    for raw in exported:
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith(("-e ", "--editable", "./", "../", "/", "file:")):
            raise SmshipError(f"{where} has a local dependency ({line}); hosts can only install "
                              "packages from the wheelhouse: publish it or drop it")
        if line.startswith("-"):
            continue        # index options: the wheelhouse replaces any index
        lines.append(line)
    return lines


def _pylock_lines(text: str, where: str) -> list[str]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SmshipError(f"{where}: cannot parse ({exc})") from None
    lines = []
    for index, package in enumerate(data.get("packages") or []):
        name, version = package.get("name"), package.get("version")
        if not isinstance(name, str) or not isinstance(version, str):
            if package.get("directory") or package.get("vcs") or package.get("archive"):
                raise SmshipError(f"{where}: packages[{index}] ({name or 'unnamed'}) is not from an index; "
                                  "hosts can only install packages from the wheelhouse")
            raise SmshipError(f"{where}: packages[{index}] needs a name and a version")
        marker = package.get("marker")
        lines.append(f"{name}=={version}" + (f" ; {marker}" if marker else ""))
    return lines


def _requirements_lines(text: str, where: str) -> list[str]:
    from packaging.requirements import InvalidRequirement, Requirement

    lines = []
    for number, line in _logical_lines(text):
        words = [w for w in line.split() if not w.startswith("--hash")]
        line = " ".join(words)
        if not line:
            continue
        if line.startswith(("-i", "--index-url", "--extra-index-url", "-f", "--find-links")):
            continue        # the wheelhouse replaces any index
        if line.startswith("-"):
            raise SmshipError(f"{where}:{number}: {line!r}: only pinned requirements can be installed offline")
        try:
            requirement = Requirement(line)
        except InvalidRequirement as exc:
            raise SmshipError(f"{where}:{number}: {exc}") from None
        specs = list(requirement.specifier)
        if requirement.url or len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
            raise SmshipError(f"{where}:{number}: {line!r} is not pinned (name==version); the hosts install "
                              "exactly what the lock names")
        lines.append(line)
    return lines


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines without comments, backslash continuations joined, each with its first line number."""
    result, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        result.append((start, (pending + line).strip()))
        pending = ""
    if pending.strip():
        result.append((start, pending.strip()))
    return result
