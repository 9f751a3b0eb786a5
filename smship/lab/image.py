"""Lab images: a Debian root filesystem built once with mmdebstrap, cached as a tarball.

A recipe (suite, packages, apt sources, customisation script) is hashed; the hash
names the cached tarball, so changing the recipe builds a new image and an
unchanged recipe reuses the cache. Every lab host is an overlay over one
unpacked copy of the tarball.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from smship.lab.system import LabError, run

RECIPE_FORMAT = 1  # bump when the way a recipe becomes an image changes

BASE_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "openssh-server", "python3",
    "python3-venv", "rsync", "sudo", "curl", "ca-certificates", "openssl", "iproute2",
    "procps", "netbase", "less",
)
FAT_EXTRA_PACKAGES = ("nginx", "postgresql", "redis-server", "pgbackrest", "acl")

# Runs on the machine with the new root as $1, after packages are installed.
# It holds no values from outside: everything per host is written later.
CUSTOMIZE_SCRIPT = r"""#!/bin/sh
set -eu
root="$1"

# Identity is per host: no shared host keys or machine-id in the image.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
: > "$root/etc/hostname"

# The login user: passwordless sudo, key installed per lab.
chroot "$root" useradd --create-home --user-group --shell /bin/bash deploy
chroot "$root" install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
printf 'deploy ALL=(ALL:ALL) NOPASSWD: ALL\n' > "$root/etc/sudoers.d/90-smship-lab"
chmod 0440 "$root/etc/sudoers.d/90-smship-lab"

# sshd: only the ed25519 key each host gets, keys only, no reverse DNS.
mkdir -p "$root/etc/ssh/sshd_config.d"
cat > "$root/etc/ssh/sshd_config.d/10-smship-lab.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF

# Quiet, quick boots: nothing periodic, no console getty, journal in memory.
for unit in apt-daily.timer apt-daily-upgrade.timer apt-daily.service \
            apt-daily-upgrade.service dpkg-db-backup.timer fstrim.timer \
            e2scrub_all.timer e2scrub_reap.service systemd-pstore.service \
            getty@tty1.service console-getty.service; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n' \
    > "$root/etc/systemd/journald.conf.d/10-smship-lab.conf"

chroot "$root" systemctl enable systemd-networkd.service ssh.service
"""


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what an image contains."""

    name: str
    suite: str
    packages: tuple[str, ...]
    sources: tuple[str, ...]          # one-line apt source entries ("deb URI SUITE COMP...")
    script: str = CUSTOMIZE_SCRIPT
    variant: str = "minbase"
    dpkg_excludes: tuple[str, ...] = field(default=(
        "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/info/*",
        "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/locale/*",
    ))

    def digest(self) -> str:
        """Short stable hash of the recipe; any change gives a new image."""
        data = json.dumps({
            "format": RECIPE_FORMAT, "name": self.name, "suite": self.suite,
            "packages": sorted(self.packages), "sources": list(self.sources),
            "script": self.script, "variant": self.variant,
            "dpkg": list(self.dpkg_excludes),
        }, sort_keys=True).encode()
        return hashlib.sha256(data).hexdigest()[:16]

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.suite}-{self.digest()}.tar.zst"


# ---------------------------------------------------------------- apt sources

def parse_one_line_sources(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(uri, suite, components) of each ``deb`` line of a sources.list."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options such as [signed-by=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            entries.append((words[0], words[1], tuple(words[2:])))
    return entries


def parse_deb822_sources(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(uri, suite, components) of each enabled ``deb`` entry of a .sources file."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0] in " \t" and key:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                entries.append((uri, suite, components))
    return entries


def machine_sources(suite: str, etc: Path = Path("/etc/apt")) -> tuple[str, ...]:
    """One-line apt sources for ``suite`` (and its -updates/-security) from the machine's
    own configuration, so lab hosts use the same mirror as the machine."""
    entries: list[tuple[str, str, tuple[str, ...]]] = []
    main = etc / "sources.list"
    if main.is_file():
        entries += parse_one_line_sources(main.read_text(errors="replace"))
    for path in sorted(glob.glob(str(etc / "sources.list.d" / "*.list"))):
        entries += parse_one_line_sources(Path(path).read_text(errors="replace"))
    for path in sorted(glob.glob(str(etc / "sources.list.d" / "*.sources"))):
        entries += parse_deb822_sources(Path(path).read_text(errors="replace"))
    lines = []
    for uri, entry_suite, components in entries:
        if entry_suite == suite or entry_suite.startswith(suite + "-") \
                or entry_suite.startswith(suite + "/"):
            line = " ".join(("deb", uri, entry_suite, *(components or ("main",))))
            if line not in lines:
                lines.append(line)
    if not any(line.split()[2] == suite for line in lines):
        raise LabError(f"no apt source for {suite} found in {etc}/sources.list or "
                       f"{etc}/sources.list.d/; the lab uses the machine's own mirror")
    return tuple(lines)


def machine_suite(os_release: Path = Path("/etc/os-release")) -> str:
    for line in os_release.read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            value = line.split("=", 1)[1].strip().strip('"')
            if value:
                return value
    raise LabError(f"cannot tell the Debian release from {os_release} (no VERSION_CODENAME)")


def sources_for(suite: str, etc: Path = Path("/etc/apt"),
                os_release: Path = Path("/etc/os-release")) -> tuple[str, ...]:
    """apt sources for ``suite`` from the machine's own mirror.

    The machine's entries for ``suite`` when it has them; otherwise its entries
    for its own suite, renamed (a Debian mirror serves every suite, so a
    bookworm machine boots trixie hosts from the same mirror).
    """
    own = machine_suite(os_release)
    if own == suite:
        return machine_sources(suite, etc)
    try:
        return machine_sources(suite, etc)
    except LabError:
        pass
    renamed = []
    for line in machine_sources(own, etc):
        words = line.split()
        words[2] = suite + words[2][len(own):]
        renamed.append(" ".join(words))
    return tuple(renamed)


# ---------------------------------------------------------------- recipes

IMAGE_NAMES = ("base", "fat")
# The Debian releases a lab boots (what smship is tested on); the first is the default.
DISTROS = ("trixie", "bookworm")
DEFAULT_DISTRO = DISTROS[0]


def recipe_for(name: str, suite: str, sources: tuple[str, ...]) -> Recipe:
    if name == "base":
        packages = BASE_PACKAGES
    elif name == "fat":
        packages = BASE_PACKAGES + FAT_EXTRA_PACKAGES
    else:
        raise LabError(f"unknown lab image {name!r}; choose one of: {', '.join(IMAGE_NAMES)}")
    return Recipe(name=name, suite=suite, packages=packages, sources=sources)


def check_distro(suite: str) -> str:
    if suite not in DISTROS:
        raise LabError(f"unknown lab distribution {suite!r}; choose one of: {', '.join(DISTROS)}")
    return suite


def machine_recipe(name: str, suite: str = DEFAULT_DISTRO) -> Recipe:
    """The recipe of image ``name`` for Debian ``suite``, from the machine's own mirror."""
    return recipe_for(name, check_distro(suite), sources_for(suite))


# ---------------------------------------------------------------- build and cache

@dataclass
class ImageResult:
    tarball: Path
    built: bool          # False when the cached tarball was reused
    seconds: float


def cache_dir() -> Path:
    from smship.settings import load_settings

    return load_settings().lab_cache


def ensure_image(recipe: Recipe, directory: Path | None = None, log=None) -> ImageResult:
    """The cached tarball for ``recipe``, building it first when missing."""
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / recipe.filename
    started = time.monotonic()
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # one build at a time per cache
        if target.is_file():
            return ImageResult(target, False, time.monotonic() - started)
        if log:
            log(f"building image {recipe.name} ({recipe.digest()}) with mmdebstrap")
        _build(recipe, target)
    return ImageResult(target, True, time.monotonic() - started)


def _build(recipe: Recipe, target: Path) -> None:
    partial = target.with_name(f".{target.name[:-len('.tar.zst')]}.partial.tar.zst")
    with tempfile.TemporaryDirectory(prefix="smship-image-") as tmp:
        hook = Path(tmp) / "customize"
        hook.write_text(recipe.script)
        hook.chmod(0o755)
        argv = ["mmdebstrap", "--mode=root", f"--variant={recipe.variant}",
                "--include=" + ",".join(recipe.packages),
                "--skip=cleanup/apt/lists",
                f"--customize-hook={hook}"]
        argv += [f"--dpkgopt={opt}" for opt in recipe.dpkg_excludes]
        argv += [recipe.suite, str(partial), *recipe.sources]
        try:
            run(argv, timeout=1800)
        except LabError:
            partial.unlink(missing_ok=True)
            raise
    os.replace(partial, target)
    (target.with_suffix("").with_suffix(".json")).write_text(json.dumps({
        "name": recipe.name, "suite": recipe.suite, "packages": list(recipe.packages),
        "sources": list(recipe.sources), "digest": recipe.digest(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }, indent=2) + "\n")


def unpack(tarball: Path, dest: Path) -> None:
    """Unpack an image tarball into an empty directory (numeric owners, xattrs kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["tar", "--extract", "--numeric-owner", "--xattrs", "--xattrs-include=*",
         "--use-compress-program=zstd", "--file", str(tarball), "--directory", str(dest)],
        timeout=600)
