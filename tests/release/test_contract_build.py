"""Real builds of apps described by the contract (app.root, app.lock, app.frontend, app.migrate), offline."""

from __future__ import annotations

import json

import pytest

from releasekit import git, make_demo_repo, make_monorepo, make_wheel
from smship.contract import AppContract
from smship.deploy.deploy import require_built_for
from smship.errors import SmshipError
from smship.release import build_release

# The builds here use tmp_path/"cache", which holds uv's wheel as after a first build.
pytestmark = pytest.mark.usefixtures("installer_in_cache")


MONOREPO = {"root": "backend", "web": {"app": "shop.web:app"},
            "migrate": {"command": "alembic upgrade head", "cwd": "db"},
            "frontend": {"dir": "../frontend", "output": "../frontend/dist", "url": "/app/", "manifest": None,
                         "env": {"VITE_API_URL": "https://{domain}/api"}}}


@pytest.fixture
def wheels(tmp_path, monkeypatch):
    index = tmp_path / "index"
    make_wheel(index, "tinydep", "1.0")
    make_wheel(index, "otherdep", "2.0")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    return index


@pytest.fixture
def mono(tmp_path, wheels):
    return make_monorepo(tmp_path / "mono", {"backend": {"tinydep": "1.0"}, "tools": {"otherdep": "2.0"}})


def test_a_monorepo_member_of_a_uv_workspace_with_a_front_end_beside_it(mono, tmp_path, commands, monkeypatch):
    monkeypatch.setenv("SM_SECRET_KEY", "s3cret-never-for-npm")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-never-for-npm")
    messages: list[str] = []
    release = build_release(mono.root, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                            contract=AppContract.model_validate(MONOREPO), domain="shop.test",
                            progress=messages.append)
    files = set(release.manifest["files"])

    # The release is backend/'s content; the SPA's output rides along in _frontend/.
    assert {"shop/web.py", "pyproject.toml", "db/alembic.ini", "_frontend/index.html",
            "_frontend/assets/app-1a2b.js"} <= files
    assert not any(f.startswith(("backend/", "frontend/", "src/")) or f == "uv.lock" for f in files)
    assert release.manifest["source_subdir"] == "backend"
    assert release.manifest["frontend"]["output"] == "_frontend"
    assert release.manifest["frontend"]["domain"] == "shop.test"
    require_built_for(release, "prod", "shop.test")
    with pytest.raises(SmshipError, match=r"built for shop.test, not staging's domain stage.test; .*--env staging"):
        require_built_for(release, "staging", "stage.test")
    assert release.manifest["lock"] == "uv.lock"
    assert release.warnings == ()           # shop/web.py is where app.web.app says

    # What the inventory puts into a build makes another release: the domain, the front end's URL.
    def built(name: str, domain: str, url: str = "/app/"):
        contract = AppContract.model_validate({**MONOREPO, "frontend": {**MONOREPO["frontend"], "url": url}})
        return build_release(mono.root, work_dir=tmp_path / name, cache_dir=tmp_path / "cache", contract=contract,
                             domain=domain)
    assert built("again", "shop.test").content == release.content
    assert built("staging", "stage.test").content != release.content
    assert built("moved", "shop.test", url="/spa/").content != release.content
    assert release.alembic_heads == ("aaa1",)   # read from app.migrate.cwd (db/), not host/

    # Only the member's own dependencies, from the workspace's lock.
    requirements = (release.wheels_path / "requirements.txt").read_text()
    assert "tinydep==1.0" in requirements and "otherdep" not in requirements
    assert any(argv[-2:] == ["--package", "backend"] for argv in commands if "export" in argv)

    # No package-lock.json: npm install; the build saw its domain and none of this machine's secrets.
    assert ["npm", "install", "--no-audit", "--no-fund"] in commands
    seen = json.loads((release.path / "_frontend" / "build-env.json").read_text())
    assert seen["VITE_API_URL"] == "https://shop.test/api"
    assert "SM_SECRET_KEY" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen
    assert not any("s3cret" in value or "aws-never" in value for value in seen.values())


def test_the_front_end_build_is_cached_per_domain(mono, tmp_path, commands):
    contract = AppContract.model_validate(MONOREPO)

    def build(domain):
        return build_release(mono.root, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                             contract=contract, domain=domain)

    build("a.test")
    build("a.test")
    build("b.test")
    builds = [argv for argv in commands if argv[:3] == ["npm", "run", "build"]]
    installs = [argv for argv in commands if argv[:2] == ["npm", "install"]]
    assert len(builds) == 2 and len(installs) == 1


def test_a_domain_is_needed_when_the_build_environment_names_it(mono, tmp_path):
    with pytest.raises(SmshipError, match=r"VITE_API_URL\) uses \{domain\}: .*--env ENV"):
        build_release(mono.root, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                      contract=AppContract.model_validate(MONOREPO))


def test_the_workspace_lock_of_an_older_commit_is_the_one_used(mono, tmp_path):
    first = git(mono.root, "rev-parse", "HEAD")
    (mono.root / "uv.lock").write_text((mono.root / "uv.lock").read_text().replace('"1.0"', '"9.9"'))
    mono.commit("bump")
    contract = AppContract.model_validate({**MONOREPO, "frontend": False})
    release = build_release(mono.root, ref=first, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                            contract=contract)
    assert "tinydep==1.0" in (release.wheels_path / "requirements.txt").read_text()


def test_a_dirty_build_of_a_subdirectory_root(mono, tmp_path):
    (mono.root / "backend" / "shop" / "new.py").write_text("NEW = 1\n")
    contract = AppContract.model_validate({**MONOREPO, "frontend": False})
    release = build_release(mono.root, dirty=True, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                            contract=contract)
    assert "shop/new.py" in release.manifest["files"] and release.manifest["frontend"] is None


def test_a_front_end_outside_the_repository_is_refused(mono, tmp_path):
    contract = AppContract.model_validate({**MONOREPO, "frontend": {"dir": "../../elsewhere"}})
    with pytest.raises(SmshipError, match=r"app.frontend.dir: '../../elsewhere' leaves the repository"):
        build_release(mono.root, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache", contract=contract)


def test_requirements_txt_and_no_lock(tmp_path, wheels):
    repo = make_demo_repo(tmp_path / "repo")
    (repo.app / "uv.lock").unlink()
    repo.write("requirements.txt", "tinydep==1.0\n")
    repo.commit("pip-style lock")
    contract = AppContract.model_validate({"frontend": False})
    release = build_release(repo.app, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache", contract=contract)
    assert release.manifest["lock"] == "apps/demo/requirements.txt"
    assert "tinydep==1.0" in (release.wheels_path / "requirements.txt").read_text()

    (repo.app / "requirements.txt").unlink()
    repo.commit("no lock")
    with pytest.raises(SmshipError, match=r"no lock for the Python project at apps/demo .*apps/demo/uv.lock"):
        build_release(repo.app, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache", contract=contract)


def test_warnings_follow_the_contract(tmp_path):
    repo = make_demo_repo(tmp_path / "repo")
    contract = AppContract.model_validate({"web": {"app": "shop.asgi:app"}, "migrate": False, "frontend": False})
    release = build_release(repo.app, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache", contract=contract)
    assert release.warnings == ("shop/asgi.py is missing at the app root (the hosts run 'uvicorn shop.asgi:app' "
                                "there; app.web.app names the ASGI app)",)
    assert release.alembic_heads == ()          # no alembic migration declared: host/ is not read
    smpy = build_release(repo.app, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache", domain="any.test")
    assert smpy.manifest["frontend"]["domain"] is None      # its build environment names no domain
    require_built_for(smpy, "prod", "other.test")
    other = AppContract.model_validate({"migrate": {"command": "python manage.py migrate", "cwd": "host"},
                                        "frontend": False})
    assert build_release(repo.app, work_dir=tmp_path / "out", cache_dir=tmp_path / "cache",
                         contract=other).alembic_heads == ()
