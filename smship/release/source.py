"""The app's source as files: a git commit (``git archive``) or the working tree.

``source`` may be a subdirectory of a bigger repository; only that subtree
is exported, with paths relative to it.
"""

from __future__ import annotations

import fnmatch
import io
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from smship.errors import SmshipError
from smship.release.proc import run


@dataclass(frozen=True)
class SourceInfo:
    repo: Path          # the repository's top level
    subdir: str         # source relative to it ("" for the top level)
    sha: str            # the commit exported (HEAD for working-tree exports)
    ref: str
    dirty: bool         # exported from the working tree
    uncommitted: bool   # the working tree differs from HEAD under subdir


def git(repo: Path, *args: str, what: str | None = None) -> str:
    done = run(["git", "-C", str(repo), *args], what=what or f"git {args[0]}")
    return done.stdout.decode().strip()


def locate(source: Path) -> tuple[Path, str]:
    """(repository top level, source's path inside it)."""
    source = Path(source).resolve()
    if not source.is_dir():
        raise SmshipError(f"{source}: no such app directory")
    try:
        top = git(source, "rev-parse", "--show-toplevel")
    except SmshipError:
        raise SmshipError(f"{source} is not inside a git repository; smship builds releases from git") from None
    top_path = Path(top).resolve()
    rel = source.relative_to(top_path).as_posix()
    return top_path, "" if rel == "." else rel


def resolve_commit(repo: Path, ref: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except SmshipError:
        raise SmshipError(f"git ref {ref!r} does not name a commit in {repo}") from None


def commit_of(source: Path, ref: str) -> str:
    """The commit ``ref`` names in the repository that holds the app at ``source``."""
    return resolve_commit(locate(source)[0], ref)


def has_uncommitted(repo: Path, subdir: str) -> bool:
    out = git(repo, "status", "--porcelain", "--untracked-files=normal", "--", subdir or ".")
    return bool(out)


def export(source: Path, dest: Path, *, ref: str = "HEAD", dirty: bool = False) -> SourceInfo:
    """Write the app's files into ``dest`` (created) and describe what was exported."""
    repo, subdir = locate(source)
    if dirty:
        sha = resolve_commit(repo, "HEAD")
        uncommitted = has_uncommitted(repo, subdir)
        _copy_working_tree(Path(source).resolve(), dest)
        return SourceInfo(repo, subdir, sha, "HEAD", True, uncommitted)
    sha = resolve_commit(repo, ref)
    uncommitted = ref == "HEAD" and has_uncommitted(repo, subdir)
    _archive_commit(repo, sha, subdir, dest)
    return SourceInfo(repo, subdir, sha, ref, False, uncommitted)


def _archive_commit(repo: Path, sha: str, subdir: str, dest: Path) -> None:
    kind = git(repo, "cat-file", "-t", f"{sha}:{subdir}", what="git cat-file") if subdir else "tree"
    if kind != "tree":
        raise SmshipError(f"{subdir} is not a directory in commit {sha[:7]}")
    done = run(["git", "-C", str(repo), "archive", "--format=tar", f"{sha}:{subdir}"],
               what="git archive")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout), mode="r:") as tar:
        extract_all(tar, dest)


# Names of files that hold credentials: a dirty build that picked one up
# while it sat untracked in the working tree would ship it to every host.
SECRET_LIKE_FILES = (".env", ".env.*", "*.pem", "*.key", "*.p12", "*.pfx", "*.jks", "*.keystore", "id_rsa*",
                     "id_ecdsa*", "id_ed25519*", "id_dsa*", ".netrc", ".pgpass", "*.secrets", "secrets.env",
                     "credentials", "credentials.json", "service-account*.json")
# Templates of those files, meant to be shared.
_TEMPLATES = (".example", ".sample", ".template", ".dist")


def secret_like_file(rel: str) -> bool:
    """Whether the repository path ``rel`` names a file that usually holds a credential."""
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(_TEMPLATES):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_LIKE_FILES)


def _copy_working_tree(source: Path, dest: Path) -> None:
    untracked = run(["git", "-C", str(source), "ls-files", "-z", "--others", "--exclude-standard"],
                    what="git ls-files")
    risky = sorted(p for p in untracked.stdout.decode().split("\0") if p and secret_like_file(p))
    if risky:
        shown = ", ".join(risky[:5]) + (f" and {len(risky) - 5} more" if len(risky) > 5 else "")
        raise SmshipError(f"a dirty build would ship untracked files that look like secrets: {shown}; "
                          "add them to .gitignore (or move them out of the repository)")
    done = run(["git", "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
               what="git ls-files")
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sorted({p for p in done.stdout.decode().split("\0") if p}):
        src = source / rel
        if not os.path.lexists(src) or (src.is_dir() and not src.is_symlink()):
            continue        # deleted but still tracked, or a submodule
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), target)
        else:
            shutil.copy2(src, target)


def extract_all(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract refusing absolute paths, ``..`` and links out of ``dest``."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar:
        target = (root / member.name).resolve()
        if root not in target.parents and target != root:
            raise SmshipError(f"archive member {member.name!r} points outside {dest}")
        if member.issym() or member.islnk():
            link = (target.parent / member.linkname).resolve()
            if root not in link.parents:
                raise SmshipError(f"archive link {member.name!r} points outside {dest}")
        tar.extract(member, dest)


class RepoFiles:
    """Single files of the repository as a build sees them: at the commit, or in the working tree."""

    def __init__(self, repo: Path, sha: str, dirty: bool):
        self.repo, self.sha, self.dirty = Path(repo), sha, dirty

    def describe(self) -> str:
        return f"the working tree of {self.repo}" if self.dirty else f"commit {self.sha[:7]} of {self.repo}"

    def read(self, rel: str) -> bytes | None:
        """The file's bytes, or ``None`` when it is absent (or not a regular file)."""
        if self.dirty:
            path = self.repo / rel
            return path.read_bytes() if path.is_file() else None
        done = subprocess.run(["git", "-C", str(self.repo), "cat-file", "blob", f"{self.sha}:{rel}"],
                              capture_output=True)
        return done.stdout if done.returncode == 0 else None

    def exists(self, rel: str) -> bool:
        return self.read(rel) is not None
