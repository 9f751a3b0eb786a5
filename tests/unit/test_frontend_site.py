"""Where the built front end lands on a web host and how nginx serves it (app.frontend)."""

from __future__ import annotations

import pytest
import yaml

from smship.contract import Frontend
from smship.inventory import InventoryError, load
from smship.layout import Layout
from test_provision_plan import file_text, project, state_for  # noqa: F401  (project is a fixture)

# smpy's locations, exactly as every web host has them today.
SMPY_LOCATIONS = """\
    # Vite content-hashes these names: the bytes behind a URL never change.
    location /static/dist/assets/ {
        alias /var/www/shop/static/dist/assets/;
        access_log off;
        expires 1y;
        add_header Cache-Control "public, immutable";
        add_header Strict-Transport-Security "max-age=63072000" always;
    }

    location /static/ {
        alias /var/www/shop/static/;
        access_log off;
    }

    location / {
"""


def with_frontend(project, frontend) -> None:
    path = project / "smship.yml"
    data = yaml.safe_load(path.read_text())
    data["app"]["frontend"] = frontend
    path.write_text(yaml.safe_dump(data))


def test_the_smpy_default_renders_todays_locations(project):
    site = file_text(state_for(project, "web1"), "sites-available/shop.conf")
    assert SMPY_LOCATIONS in site
    assert "try_files" not in site and "/var/www/shop/frontend" not in site
    directories = [d.path for d in state_for(project, "web1").directories]
    assert not any("frontend" in d for d in directories)


def test_a_front_end_at_its_own_url_is_served_with_immutable_assets_and_an_spa_fallback(project):
    with_frontend(project, {"dir": "../frontend", "output": "../frontend/dist", "url": "/app/",
                            "immutable": "assets/", "manifest": None})
    state = state_for(project, "web1")
    site = file_text(state, "sites-available/shop.conf")
    assert """\
    location /app/assets/ {
        alias /var/www/shop/frontend/app/assets/;
        access_log off;
        expires 1y;
        add_header Cache-Control "public, immutable";""" in site
    assert """\
    location /app/ {
        root /var/www/shop/frontend;
        access_log off;
        try_files $uri $uri/ /app/index.html =404;
    }""" in site
    assert "location /static/" not in site
    assert "/var/www/shop/frontend/app" in [d.path for d in state.directories]


def test_no_front_end_no_location(project):
    with_frontend(project, False)
    site = file_text(state_for(project, "web1"), "sites-available/shop.conf")
    assert "location /static/" not in site and "immutable" not in site and "try_files" not in site
    assert "location / {" in site


def test_a_front_end_without_hashed_files_gets_no_immutable_location(project):
    with_frontend(project, {"url": "/static/dist/", "immutable": None})
    site = file_text(state_for(project, "web1"), "sites-available/shop.conf")
    assert "immutable" not in site and "location /static/ {" in site


def test_the_front_end_cannot_take_over_the_apps_root(project):
    with_frontend(project, {"url": "/"})
    with pytest.raises(InventoryError, match=r"app.frontend.url: .*'/' is where nginx passes requests to the app"):
        load(project / "smship.yml")


def test_where_the_output_lands():
    layout = Layout(app="shop", user="shop", root="/srv/shop")
    assert layout.frontend_dir("/static/dist/") == "/var/www/shop/static/dist"
    assert layout.frontend_dir("/app/") == "/var/www/shop/frontend/app"
    assert layout.frontend_dir("/a/b/") == "/var/www/shop/frontend/a/b"


def test_install_is_npm_ci_with_a_lock_and_npm_install_without():
    assert Frontend().install_command(has_lock=False)[:2] == ["npm", "install"]
    assert Frontend().install_command(has_lock=True)[:2] == ["npm", "ci"]
    declared = Frontend.model_validate({"install": "pnpm install --frozen-lockfile"})
    assert declared.install_command(has_lock=False) == ["pnpm", "install", "--frozen-lockfile"]


def test_a_release_ships_a_front_end_only_when_it_has_one(tmp_path):
    from types import SimpleNamespace

    from smship.steps.ship import frontend_output

    (tmp_path / "static" / "dist").mkdir(parents=True)
    (tmp_path / "_frontend").mkdir()
    release = lambda frontend: SimpleNamespace(path=tmp_path, manifest={"frontend": frontend})  # noqa: E731
    assert frontend_output(release(None)) is None           # built without one: nothing to rsync
    assert frontend_output(release({"lock_sha256": "x"})) == tmp_path / "static" / "dist"   # before "output"
    assert frontend_output(release({"output": "_frontend"})) == tmp_path / "_frontend"
    (tmp_path / "static" / "dist").rmdir()
    assert frontend_output(release({"lock_sha256": "x"})) is None
