"""Locked dependencies as an offline wheelhouse for the hosts.

The lock's pinned requirements (:mod:`smship.release.locks`); ``pip download``
fetches wheels for the hosts' platform (Debian bookworm: Linux x86_64,
CPython 3.11), whatever machine runs the build.  The result is cached by
``deps_id`` (the first 16 hex digits of the sha256 of the wheelhouse's
``requirements.txt``, whose first line names the target), so a second build
with the same lock downloads nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from smship.errors import SmshipError
from smship.release import cachedir, proc
from smship.release.files import sha256_bytes
from smship.release.model import REQUIREMENTS

PARALLEL = 4


@dataclass(frozen=True)
class Target:
    """The interpreter on the hosts that will install the wheels."""

    python_version: str = "3.11"
    python_full_version: str = "3.11.2"     # bookworm's /usr/bin/python3
    machine: str = "x86_64"
    glibc: tuple[int, int] = (2, 36)

    @property
    def abi(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    def platforms(self) -> list[str]:
        major, minor = self.glibc
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 4, -1)]
        tags += [f"manylinux2014_{self.machine}", f"manylinux2010_{self.machine}",
                 f"manylinux1_{self.machine}", f"linux_{self.machine}"]
        return tags

    def describe(self) -> str:
        return (f"cpython {self.python_full_version} linux {self.machine} "
                f"glibc {self.glibc[0]}.{self.glibc[1]}")

    def marker_environment(self) -> dict[str, str]:
        return {"implementation_name": "cpython", "implementation_version": self.python_full_version,
                "os_name": "posix", "platform_machine": self.machine, "platform_python_implementation": "CPython",
                "platform_system": "Linux", "python_full_version": self.python_full_version,
                "python_version": self.python_version, "sys_platform": "linux", "platform_release": "",
                "platform_version": ""}


BOOKWORM = Target()


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    deps_id: str
    downloaded: bool


def requirements_text(lines: list[str], target: Target) -> str:
    return f"# smship wheelhouse for {target.describe()}\n" + "".join(f"{line}\n" for line in lines)


def deps_id_of(text: str) -> str:
    return sha256_bytes(text.encode())[:16]


def applies(line: str, target: Target) -> bool:
    """Whether a requirement's environment marker holds on the target."""
    if ";" not in line:
        return True
    from packaging.markers import Marker
    return Marker(line.split(";", 1)[1].strip()).evaluate(target.marker_environment())


def build_wheelhouse(lines: list[str], cache: Path, *, python: str = sys.executable, target: Target = BOOKWORM,
                     progress: Callable[[str], None] = lambda _m: None) -> Wheelhouse:
    """The cached wheelhouse for the lock's pinned ``lines`` (smship.release.locks), downloading it only when absent."""
    text = requirements_text(lines, target)
    deps_id = deps_id_of(text)
    entry = cache / "wheels" / deps_id
    if (entry / REQUIREMENTS).is_file():
        progress(f"dependencies: reusing wheelhouse {deps_id}")
        return Wheelhouse(entry, deps_id, downloaded=False)
    wanted = [line for line in lines if applies(line, target)]
    progress(f"dependencies: downloading {len(wanted)} wheels for {target.describe()}")
    tmp = cachedir.fresh_tmp(entry.parent)
    download(wanted, tmp, python=python, target=target)
    (tmp / REQUIREMENTS).write_text(text)
    cachedir.publish(tmp, entry)
    return Wheelhouse(entry, deps_id, downloaded=True)


def pip_download_argv(python: str, requirements: list[str], dest: Path, target: Target) -> list[str]:
    argv = [python, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--no-deps",
            "--only-binary=:all:", "--dest", str(dest), "--implementation", "cp",
            "--python-version", target.python_version, "--abi", target.abi, "--abi", "abi3", "--abi", "none"]
    for platform in target.platforms():
        argv += ["--platform", platform]
    return argv + [r.split(";", 1)[0].strip() for r in requirements]


def download(requirements: list[str], dest: Path, *, python: str, target: Target) -> None:
    """Wheels for every requirement into ``dest``; the lock already lists every dependency (``--no-deps``)."""
    if not requirements:
        return
    chunks = [requirements[i::PARALLEL] for i in range(PARALLEL) if requirements[i::PARALLEL]]

    def fetch(chunk: list[str]) -> list[str]:
        try:
            proc.run(pip_download_argv(python, chunk, dest, target), what="pip download")
            return []
        except SmshipError:
            missing = []
            for requirement in chunk:      # find which ones have no wheel for the target
                try:
                    proc.run(pip_download_argv(python, [requirement], dest, target), what="pip download")
                except SmshipError:
                    missing.append(requirement)
            return missing

    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        missing = [r for found in pool.map(fetch, chunks) for r in found]
    for requirement in missing:
        build_pure_wheel(requirement, dest, python=python)


def build_pure_wheel(requirement: str, dest: Path, *, python: str) -> None:
    """Build a wheel from the sdist of a package without one; only a pure-Python wheel is portable."""
    name = requirement.split(";", 1)[0].strip()
    work = Path(cachedir.fresh_tmp(dest.parent))
    try:
        try:
            proc.run([python, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "--no-deps",
                      "--no-binary", ":all:", "--wheel-dir", str(work), name], what=f"pip wheel {name}")
        except SmshipError as exc:
            raise SmshipError(f"dependency {name} has no wheel for the hosts and could not be built: {exc}") from None
        built = list(work.glob("*.whl"))
        if not built or not all(w.name.endswith("-none-any.whl") for w in built):
            raise SmshipError(f"dependency {name} has no wheel for Linux x86_64 CPython 3.11 and its sdist "
                              "builds a platform-specific wheel; the hosts cannot install it offline")
        for wheel in built:
            os.replace(wheel, dest / wheel.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
