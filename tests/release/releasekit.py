"""Helpers for release tests: a throwaway git repo holding a minimal app.

The app sits in a subdirectory (``apps/demo``) of a bigger repository, the
way examples/smpy-app sits in smship's.  Its front end needs no network:
``package.json`` has no dependencies, its ``build`` script writes the Vite
manifest with plain node, and both ``postinstall`` and ``build`` append a
line to ``$HOME/.fixture-npm.log`` when that file exists, so tests can count
how often npm really ran (npm sees only a few variables, HOME among them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path


APP = "apps/demo"

LOG_NAME = ".fixture-npm.log"
LOG_JS = ("const fs = require('fs'), p = (process.env.HOME || '/nonexistent') + '/" + LOG_NAME + "'; "
          "if (fs.existsSync(p)) fs.appendFileSync(p, process.argv[1] + '\\n')")
BUILD_JS = """\
const fs = require('fs');
fs.mkdirSync('../static/dist/.vite', {recursive: true});
fs.mkdirSync('../static/dist/assets', {recursive: true});
const src = fs.readFileSync('src/main.js');
fs.writeFileSync('../static/dist/assets/main.js', src);
fs.writeFileSync('../static/dist/.vite/manifest.json',
  JSON.stringify({'src/main.js': {file: 'assets/main.js', isEntry: true}}));
const log = (process.env.HOME || '/nonexistent') + '/.fixture-npm.log';
if (fs.existsSync(log)) fs.appendFileSync(log, 'build\\n');
"""

REV_A = '''"""first"""
revision = "aaa1"
down_revision = None
'''
REV_B = '''"""second"""
from typing import Sequence, Union
revision: str = "bbb2"
down_revision: Union[str, Sequence[str], None] = "aaa1"
'''


def uv_lock(deps: dict[str, str]) -> str:
    """A uv.lock as uv writes it, for a virtual project with pinned ``deps``."""
    out = ['version = 1', 'revision = 3', 'requires-python = ">=3.11"', '',
           '[[package]]', 'name = "demo"', 'version = "0.1.0"', 'source = { virtual = "." }']
    if deps:
        out.append("dependencies = [")
        out += [f'    {{ name = "{name}" }},' for name in deps]
        out += ["]", "", "[package.metadata]",
                "requires-dist = [" + ", ".join(f'{{ name = "{n}" }}' for n in deps) + "]"]
    for name, version in deps.items():
        out += ["", "[[package]]", f'name = "{name}"', f'version = "{version}"',
                'source = { registry = "https://pypi.org/simple" }',
                f'wheels = [{{ url = "https://files.example/{name}-{version}-py3-none-any.whl" }}]']
    return "\n".join(out) + "\n"


def pyproject(deps: dict[str, str]) -> str:
    listed = ", ".join(f'"{n}"' for n in deps)
    return ('[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
            f'dependencies = [{listed}]\n\n[tool.uv]\npackage = false\n')


def make_wheel(directory: Path, name: str, version: str) -> Path:
    """A tiny pure-Python wheel, valid enough for pip to install."""
    directory.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": f"VALUE = {version!r}\n".encode(),
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: smship-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    record += f"{info}/RECORD,,\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{info}/RECORD", record)
    return wheel


def make_uv_wheel(directory: Path) -> Path:
    """uv's wheel as the wheelhouse carries it, wrapping this machine's own uv binary (a real installer)."""
    import uv
    from smship.release.wheelhouse import UV_VERSION
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"uv-{UV_VERSION}-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(uv.find_uv_bin(), f"uv-{UV_VERSION}.data/scripts/uv")
        archive.writestr(f"uv-{UV_VERSION}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: uv\nVersion: {UV_VERSION}\n")
    return wheel


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@dataclass
class DemoRepo:
    root: Path

    @property
    def app(self) -> Path:
        return self.root / APP

    def write(self, rel: str, text: str) -> None:
        path = self.app / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str) -> str:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", message)
        return git(self.root, "rev-parse", "HEAD")


def make_demo_repo(root: Path, deps: dict[str, str] | None = None) -> DemoRepo:
    deps = deps or {}
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.invalid")
    git(root, "config", "user.name", "Dev")
    (root / "OTHER.md").write_text("not part of the app\n")
    repo = DemoRepo(root)
    repo.write("main.py", "from pathlib import Path\nVERSION = (Path(__file__).parent / 'RELEASE_ID').read_text()\n")
    repo.write(".gitignore", "static/dist/\nnode_modules/\n*.log\n")
    repo.write("host/alembic.ini", "[alembic]\nscript_location = %(here)s/migrations\n")
    repo.write("host/migrations/env.py", "# env\n")
    repo.write("host/migrations/versions/aaa1_first.py", REV_A)
    repo.write("host/migrations/versions/bbb2_second.py", REV_B)
    repo.write("static/robots.txt", "User-agent: *\n")
    package = {"name": "demo-client", "version": "1.0.0", "private": True,
               "scripts": {"postinstall": f'node -e "{LOG_JS}" install', "build": "node build.js"}}
    repo.write("client_app/package.json", json.dumps(package, indent=2) + "\n")
    lock = {"name": "demo-client", "version": "1.0.0", "lockfileVersion": 3, "requires": True,
            "packages": {"": {"name": "demo-client", "version": "1.0.0", "hasInstallScript": True}}}
    repo.write("client_app/package-lock.json", json.dumps(lock, indent=2) + "\n")
    repo.write("client_app/build.js", BUILD_JS)
    repo.write("client_app/src/main.js", "console.log('v1');\n")
    repo.write("pyproject.toml", pyproject(deps))
    repo.write("uv.lock", uv_lock(deps))
    repo.commit("demo app")
    return repo




# A monorepo of another shape: a uv workspace whose member backend/ is the
# Python project, and frontend/ beside it, an SPA with no package-lock.json
# that builds into frontend/dist. Its build writes the environment it saw,
# so tests can prove what npm was given and what it was not.
SPA_BUILD_JS = """\
const fs = require('fs');
fs.mkdirSync('dist/assets', {recursive: true});
fs.writeFileSync('dist/index.html', '<script src="/app/assets/app-1a2b.js"></script>');
fs.writeFileSync('dist/assets/app-1a2b.js', fs.readFileSync('src/app.js'));
fs.writeFileSync('dist/build-env.json', JSON.stringify(process.env));
"""


def workspace_lock(members: dict[str, dict[str, str]]) -> str:
    """uv.lock of a workspace (virtual root ``mono``) whose members pin ``{member: {dep: version}}``."""
    names = sorted([*members, "mono"])
    out = ['version = 1', 'revision = 3', 'requires-python = ">=3.11"', '', '[manifest]',
           'members = [' + ", ".join(f'"{n}"' for n in names) + ']']
    packages = {"mono": ('source = { virtual = "." }', {})}
    for member, deps in members.items():
        packages[member] = (f'source = {{ virtual = "{member}" }}', deps)
        for dep, version in deps.items():
            packages[dep] = (version, None)
    for name in sorted(packages):
        first, deps = packages[name]
        out += ["", "[[package]]", f'name = "{name}"']
        if deps is None:
            out += [f'version = "{first}"', 'source = { registry = "https://pypi.org/simple" }',
                    f'wheels = [{{ url = "https://files.example/{name}-{first}-py3-none-any.whl" }}]']
            continue
        out += ['version = "0.1.0"', first]
        if deps:
            out += ["dependencies = [" + ", ".join(f'{{ name = "{d}" }}' for d in deps) + "]", "",
                    "[package.metadata]",
                    "requires-dist = [" + ", ".join(f'{{ name = "{d}", specifier = "=={v}" }}'
                                                    for d, v in deps.items()) + "]"]
    return "\n".join(out) + "\n"


def make_monorepo(root: Path, members: dict[str, dict[str, str]]) -> DemoRepo:
    """``backend`` (and any other member) in a uv workspace at the top, ``frontend/`` beside it."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.invalid")
    git(root, "config", "user.name", "Dev")
    repo = DemoRepo(root)

    def write(rel: str, text: str) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)

    write(".gitignore", "node_modules/\ndist/\n")
    write("pyproject.toml", '[project]\nname = "mono"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n\n'
                            '[tool.uv]\npackage = false\n\n[tool.uv.workspace]\nmembers = ["backend", "tools"]\n')
    write("uv.lock", workspace_lock(members))
    for member, deps in members.items():
        listed = ", ".join(f'"{d}=={v}"' for d, v in deps.items())
        write(f"{member}/pyproject.toml", f'[project]\nname = "{member}"\nversion = "0.1.0"\n'
                                          f'requires-python = ">=3.11"\ndependencies = [{listed}]\n')
    write("backend/shop/__init__.py", "")
    write("backend/shop/web.py", "app = object()\n")
    write("backend/db/alembic.ini", "[alembic]\nscript_location = %(here)s/migrations\n")
    write("backend/db/migrations/versions/aaa1_first.py", REV_A)
    package = {"name": "spa", "version": "1.0.0", "private": True, "scripts": {"build": "node build.js"}}
    write("frontend/package.json", json.dumps(package, indent=2) + "\n")
    write("frontend/build.js", SPA_BUILD_JS)
    write("frontend/src/app.js", "console.log('spa');\n")
    repo.commit("monorepo")
    return repo
