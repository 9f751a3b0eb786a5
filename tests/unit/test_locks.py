"""Which lock a build uses, and the pinned lines it gives (working-tree view of a tmp directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from smship.errors import SmshipError
from smship.release.apppaths import OUTSIDE_OUTPUT, AppPaths
from smship.release.locks import Lock, find_lock, requirement_lines, requires_python
from smship.release.source import RepoFiles
from smship.contract import AppContract

WORKSPACE = '[project]\nname = "mono"\nversion = "0"\n\n[tool.uv.workspace]\nmembers = ["services/*"]\n'


def tree(root: Path, files: dict[str, str]) -> RepoFiles:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return RepoFiles(root, "0" * 40, dirty=True)


def test_uv_lock_beside_the_project_wins(tmp_path):
    files = tree(tmp_path, {"backend/uv.lock": "", "backend/requirements.txt": "", "uv.lock": "",
                            "pyproject.toml": WORKSPACE})
    assert find_lock(files, "backend") == Lock("uv", "backend/uv.lock", project="backend")


def test_a_uv_workspace_member_uses_the_workspace_lock_and_exports_its_own_package(tmp_path):
    files = tree(tmp_path, {"uv.lock": "", "pyproject.toml": WORKSPACE,
                            "services/api/pyproject.toml": '[project]\nname = "shop-api"\nversion = "1"\n',
                            "services/api/requirements.txt": "six==1.16.0\n"})
    assert find_lock(files, "services/api") == Lock("uv", "uv.lock", "shop-api", "services/api")


def test_a_workspace_that_does_not_list_the_project_is_passed_over(tmp_path):
    files = tree(tmp_path, {"uv.lock": "", "pyproject.toml": WORKSPACE.replace("services/*", "libs/*"),
                            "backend/pyproject.toml": '[project]\nname = "b"\n',
                            "backend/requirements.txt": "six==1.16.0\n"})
    assert find_lock(files, "backend") == Lock("requirements", "backend/requirements.txt", project="backend")


def test_a_workspace_member_without_the_workspace_lock_is_told_to_lock(tmp_path):
    files = tree(tmp_path, {"pyproject.toml": WORKSPACE, "services/api/pyproject.toml": '[project]\nname = "a"\n'})
    with pytest.raises(SmshipError, match=r"member of the uv workspace at \., which has no uv.lock"):
        find_lock(files, "services/api")


def test_pylock_comes_before_requirements(tmp_path):
    files = tree(tmp_path, {"app/pylock.toml": "", "app/requirements.txt": ""})
    assert find_lock(files, "app").kind == "pylock"


def test_no_lock_names_every_place_looked_at(tmp_path):
    files = tree(tmp_path, {"backend/main.py": "", "pyproject.toml": '[project]\nname = "x"\n'})
    with pytest.raises(SmshipError) as caught:
        find_lock(files, "backend")
    message = str(caught.value)
    for looked in ("backend/uv.lock", "uv.lock (a uv workspace with backend as a member)", "backend/pylock.toml",
                   "backend/requirements.txt", "app.lock"):
        assert looked in message


def test_a_declared_lock_is_used_as_named_and_must_exist(tmp_path):
    files = tree(tmp_path, {"backend/requirements/prod.txt": "six==1.16.0\n", "backend/uv.lock": ""})
    assert find_lock(files, "backend", "requirements/prod.txt") == \
        Lock("requirements", "backend/requirements/prod.txt", project="backend")
    with pytest.raises(SmshipError, match=r"app.lock: backend/requirements.txt is not in the working tree"):
        find_lock(files, "backend", "requirements.txt")
    with pytest.raises(SmshipError, match="leaves the repository"):
        find_lock(files, "backend", "../../etc/requirements.txt")


def test_requirements_must_be_pinned(tmp_path):
    text = ("# comment\n--index-url https://pypi.example/simple\nsix==1.16.0 \\\n    --hash=sha256:abc\n"
            "idna==3.7 ; python_version >= '3.8'  # why\n")
    files = tree(tmp_path, {"requirements.txt": text})
    lock = find_lock(files, "")
    assert requirement_lines(files, lock, tmp_path / "scratch") == [
        "six==1.16.0", "idna==3.7 ; python_version >= '3.8'"]
    files = tree(tmp_path, {"requirements.txt": "six==1.16.0\nfastapi>=0.100\n"})
    with pytest.raises(SmshipError, match=r"requirements.txt:2: 'fastapi>=0.100' is not pinned"):
        requirement_lines(files, lock, tmp_path / "scratch")
    files = tree(tmp_path, {"requirements.txt": "-e ./lib\n"})
    with pytest.raises(SmshipError, match=r"requirements.txt:1: .* only pinned requirements"):
        requirement_lines(files, lock, tmp_path / "scratch")


def test_pylock_packages_become_pinned_lines(tmp_path):
    text = ('lock-version = "1.0"\ncreated-by = "x"\n[[packages]]\nname = "six"\nversion = "1.16.0"\n'
            '[[packages]]\nname = "colorama"\nversion = "0.4.6"\nmarker = "sys_platform == \'win32\'"\n')
    files = tree(tmp_path, {"pylock.toml": text})
    assert requirement_lines(files, find_lock(files, ""), tmp_path / "scratch") == [
        "six==1.16.0", "colorama==0.4.6 ; sys_platform == 'win32'"]


def test_paths_stay_in_the_repository():
    contract = AppContract.model_validate({"root": "backend", "frontend": {"dir": "../frontend",
                                                                         "output": "../frontend/dist"}})
    paths = AppPaths.of("", contract)
    assert (paths.root, paths.frontend, paths.output, paths.output_in_release) == (
        "backend", "frontend", "frontend/dist", OUTSIDE_OUTPUT)
    assert AppPaths.of("apps/demo", AppContract()).output_in_release == "static/dist"
    escaping = AppContract.model_validate({"root": "backend", "frontend": {"dir": "../../frontend"}})
    with pytest.raises(SmshipError, match=r"app.frontend.dir: '../../frontend' leaves the repository"):
        AppPaths.of("", escaping)
    with pytest.raises(SmshipError, match=r"app.root: '../x' leaves the repository"):
        AppPaths.of("", AppContract.model_validate({"root": "../x"}))
    assert AppPaths.of("", AppContract.model_validate({"frontend": False})).output is None


UV_LOCK_HEAD = 'version = 1\nrequires-python = ">=3.12"\nresolution-markers = [\n    "python_full_version >= \'3.13\'",\n]\n'


@pytest.mark.parametrize("head", [
    UV_LOCK_HEAD,
    # A line opening with "[" inside a top-level array: the text before it is no TOML document, and the
    # whole file is read instead.
    'version = 1\nodd = [\n["nested"],\n]\nrequires-python = ">=3.12"\n',
])
def test_the_lock_s_requires_python_is_read_from_its_top_level(tmp_path, head):
    packages = "".join(f'\n[[package]]\nname = "p{i}"\nversion = "1.0"\n' for i in range(50))
    files = tree(tmp_path, {"uv.lock": head + packages, "pyproject.toml": '[project]\nrequires-python = ">=3.9"\n'})
    assert requires_python(files, Lock("uv", "uv.lock", project="")) == (">=3.12", "uv.lock")


def test_a_lock_without_requires_python_leaves_it_to_the_project(tmp_path):
    files = tree(tmp_path, {"uv.lock": 'version = 1\n\n[[package]]\nname = "p"\nrequires-python = ">=3.8"\n',
                            "pyproject.toml": '[project]\nrequires-python = ">=3.10"\n'})
    assert requires_python(files, Lock("uv", "uv.lock", project="")) == (">=3.10", "pyproject.toml")
