import json
import logging
import shutil

from refapp.assets import IMMUTABLE


def test_vite_build_writes_manifest_and_hashed_assets(frontend_build):
    manifest = json.loads((frontend_build / "dist" / ".vite" / "manifest.json").read_text())
    entry = manifest["src/main.js"]
    assert entry["isEntry"] and entry["file"].startswith("assets/main-")
    assert (frontend_build / "dist" / entry["file"]).exists()
    assert entry["css"] and (frontend_build / "dist" / entry["css"][0]).exists()


def test_hashed_assets_are_immutable_other_static_files_are_not(frontend_build, make_settings, client_for):
    manifest = json.loads((frontend_build / "dist" / ".vite" / "manifest.json").read_text())
    js = manifest["src/main.js"]["file"]
    with client_for(make_settings()) as client:
        resp = client.get(f"/static/dist/{js}")
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == IMMUTABLE
        # A revalidation still carries the immutable header.
        again = client.get(f"/static/dist/{js}", headers={"If-None-Match": resp.headers["etag"]})
        assert again.status_code == 304
        assert again.headers["cache-control"] == IMMUTABLE

        plain = client.get("/static/robots.txt")
        assert plain.status_code == 200
        assert "immutable" not in plain.headers.get("cache-control", "")
        assert plain.headers["etag"] and plain.headers["last-modified"]

        manifest_resp = client.get("/static/dist/.vite/manifest.json")
        assert "immutable" not in manifest_resp.headers.get("cache-control", "")
        assert client.get("/static/dist/assets/missing-file.js").status_code == 404


def _copy_static(frontend_build, tmp_path):
    root = tmp_path / "workspace"
    shutil.copytree(frontend_build, root / "static")
    shutil.copytree(frontend_build.parent / "host", root / "host")
    return root


def test_production_renders_manifest_tags(frontend_build, make_settings, client_for, tmp_path):
    root = _copy_static(frontend_build, tmp_path)
    raw = json.loads((root / "static" / "dist" / ".vite" / "manifest.json").read_text())
    settings = make_settings(SM_ENVIRONMENT="production").with_changes(workspace_root=root)
    with client_for(settings) as client:
        page = client.get("/").text
    chunk = raw["src/main.js"]
    assert f'<script type="module" src="/static/dist/{chunk["file"]}"></script>' in page
    assert f'<link rel="stylesheet" href="/static/dist/{chunk["css"][0]}">' in page
    assert "@vite/client" not in page
    normalised = json.loads((root / "static" / "dist" / ".vite" / "inertia-manifest.json").read_text())
    assert normalised["src/main.js"]["file"] == chunk["file"]


def test_manifest_entry_is_rekeyed_and_read_only_build_dir_falls_back(make_settings, client_for, tmp_path):
    root = tmp_path / "workspace"
    vite = root / "static" / "dist" / ".vite"
    vite.mkdir(parents=True)
    (vite / "manifest.json").write_text(
        json.dumps({"client/entry.js": {"file": "assets/entry-abc123.js", "isEntry": True, "css": ["assets/entry-def.css"]}})
    )
    # Something that cannot be written as a file stands where the normalised copy would go.
    (vite / "inertia-manifest.json").mkdir()
    shutil.copytree(make_settings().workspace_root / "host", root / "host")
    settings = make_settings(SM_ENVIRONMENT="staging").with_changes(workspace_root=root)
    with client_for(settings) as client:
        page = client.get("/").text
        written = client.app.state.assets.manifest_path
    assert '<script type="module" src="/static/dist/assets/entry-abc123.js"></script>' in page
    assert written is not None and written.parent != vite
    assert json.loads(written.read_text())["src/main.js"]["file"] == "assets/entry-abc123.js"
    written.unlink()


def test_missing_manifest_warns_and_still_boots(make_settings, client_for, tmp_path, caplog):
    root = tmp_path / "workspace"
    (root / "static").mkdir(parents=True)
    shutil.copytree(make_settings().workspace_root / "host", root / "host")
    settings = make_settings(SM_ENVIRONMENT="production").with_changes(workspace_root=root)
    with caplog.at_level(logging.WARNING, logger="refapp.assets"):
        with client_for(settings) as client:
            assert client.get("/health/live").status_code == 200
            page = client.get("/").text
    assert any("no built Vite manifest" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "<script" not in page


def test_development_points_at_the_vite_dev_server(make_settings, client_for):
    settings = make_settings(SM_ENVIRONMENT="development", SM_VITE_DEV_URL="http://localhost:5173")
    with client_for(settings) as client:
        page = client.get("/").text
    assert '<script type="module" src="http://localhost:5173/@vite/client"></script>' in page
    assert '<script type="module" src="http://localhost:5173/src/main.js"></script>' in page
    assert "/static/dist/assets/" not in page
