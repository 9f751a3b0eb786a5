"""Locked dependencies as an offline wheelhouse for the hosts.

The lock's pinned requirements (:mod:`smship.release.locks`); ``pip download``
fetches wheels for the hosts' platform (Linux x86_64 and the hosts' CPython:
3.13 on Debian 13, 3.11 on Debian 12), whatever machine runs the build.  The result is cached by
``deps_id`` (the first 16 hex digits of the sha256 of the wheelhouse's
``requirements.txt``, whose first line names the target), so a second build
with the same lock downloads nothing.

The wheelhouse also carries the installer the hosts build the virtualenv
with: uv's own wheel (:data:`UV_VERSION`, named in ``requirements.txt``'s
second line, so it is part of ``deps_id``).  The hosts unpack uv from it;
they never reach an index.  It is fetched once per machine kind into the
cache's ``installers/`` and linked into each new wheelhouse.
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
from smship.release.hostcmds import INSTALLER_LINE
from smship.release.model import REQUIREMENTS

PARALLEL = 4
# The uv the hosts install with: tested with smship, changed only with it.
UV_VERSION = "0.13.9"


@dataclass(frozen=True)
class Target:
    """The interpreter on the hosts that will install the wheels."""

    python_version: str = "3.13"
    python_full_version: str = "3.13.5"     # Debian 13's /usr/bin/python3
    machine: str = "x86_64"
    glibc: tuple[int, int] = (2, 41)

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


TRIXIE = Target()
BOOKWORM = Target("3.11", "3.11.2", glibc=(2, 36))
# A build without hosts to ask (``smship build --python``) targets the Debian release with that Python.
DEBIAN_TARGETS = {t.python_version: t for t in (TRIXIE, BOOKWORM)}


def target_for_version(version: str) -> Target:
    if version not in DEBIAN_TARGETS:
        raise SmshipError(f"no Debian release smship tests ships CPython {version}; "
                          f"choose one of {', '.join(sorted(DEBIAN_TARGETS))}")
    return DEBIAN_TARGETS[version]


def require_python(wanted: str | None, where: str, target: Target) -> None:
    """Refuse, before building, a lock whose ``requires-python`` (``wanted``, read from ``where``)
    excludes the hosts' interpreter."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    if not wanted:
        return
    try:
        fits = SpecifierSet(wanted).contains(target.python_full_version, prereleases=True)
    except InvalidSpecifier:
        return
    if not fits:
        raise SmshipError(f"the lock requires Python {wanted} ({where} requires-python) but the hosts run "
                          f"CPython {target.python_full_version}; set app.python to a version in {wanted} that "
                          "the hosts' distribution offers (Debian 13: 3.13, Debian 12: 3.11), move the hosts to "
                          "a Debian release with one, or widen requires-python and lock again")


@dataclass(frozen=True)
class Wheelhouse:
    path: Path
    deps_id: str
    downloaded: bool


def requirements_text(lines: list[str], target: Target) -> str:
    return (f"# smship wheelhouse for {target.describe()}\n{INSTALLER_LINE}{UV_VERSION}\n"
            + "".join(f"{line}\n" for line in lines))


def installer_wheel(cache: Path, *, python: str, target: Target) -> Path:
    """uv's wheel for the hosts' machine, from the cache or downloaded into it once."""
    entry = cache / "installers" / f"uv-{UV_VERSION}-{target.machine}"
    found = sorted(entry.glob(f"uv-{UV_VERSION}-*.whl"))
    if not found:
        tmp = cachedir.fresh_tmp(entry.parent)
        proc.run(pip_download_argv(python, [f"uv=={UV_VERSION}"], tmp, target), env={},
                 what=f"pip download uv {UV_VERSION}")
        cachedir.publish(tmp, entry)
        found = sorted(entry.glob(f"uv-{UV_VERSION}-*.whl"))
    if not found:
        raise SmshipError(f"pip download of uv {UV_VERSION} left no wheel in {entry}")
    return found[0]


def deps_id_of(text: str) -> str:
    return sha256_bytes(text.encode())[:16]


def applies(line: str, target: Target) -> bool:
    """Whether a requirement's environment marker holds on the target."""
    if ";" not in line:
        return True
    from packaging.markers import Marker
    return Marker(line.split(";", 1)[1].strip()).evaluate(target.marker_environment())


def build_wheelhouse(lines: list[str], cache: Path, *, python: str = sys.executable, target: Target = TRIXIE,
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
    installer = installer_wheel(cache, python=python, target=target)
    tmp = cachedir.fresh_tmp(entry.parent)
    download(wanted, tmp, python=python, target=target)
    if not (tmp / installer.name).exists():     # the app may itself depend on this uv
        shutil.copy2(installer, tmp / installer.name)
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
            proc.run(pip_download_argv(python, chunk, dest, target), env={}, what="pip download")
            return []
        except SmshipError:
            missing = []
            for requirement in chunk:      # find which ones have no wheel for the target
                try:
                    proc.run(pip_download_argv(python, [requirement], dest, target), env={}, what="pip download")
                except SmshipError:
                    missing.append(requirement)
            return missing

    with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
        missing = [r for found in pool.map(fetch, chunks) for r in found]
    for requirement in missing:
        build_pure_wheel(requirement, dest, python=python, target=target)


def build_pure_wheel(requirement: str, dest: Path, *, python: str, target: Target = TRIXIE) -> None:
    """Build a wheel from the sdist of a package without one; only a pure-Python wheel is portable."""
    name = requirement.split(";", 1)[0].strip()
    work = Path(cachedir.fresh_tmp(dest.parent))
    try:
        try:
            proc.run([python, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "--no-deps",
                      "--no-binary", ":all:", "--wheel-dir", str(work), name], env={},
                     what=f"pip wheel {name}")
        except SmshipError as exc:
            raise SmshipError(f"dependency {name} has no wheel for the hosts and could not be built: {exc}") from None
        built = list(work.glob("*.whl"))
        if not built or not all(w.name.endswith("-none-any.whl") for w in built):
            raise SmshipError(f"dependency {name} has no wheel for {target.describe()} and its sdist "
                              "builds a platform-specific wheel; the hosts cannot install it offline")
        for wheel in built:
            os.replace(wheel, dest / wheel.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
