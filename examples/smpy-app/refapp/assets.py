"""Front-end assets: Vite manifest handling and the static files mount."""
from __future__ import annotations

import html
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

log = logging.getLogger("refapp.assets")

ENTRY = "src/main.js"  # the key pages ask the manifest for
STATIC_URL = "/static"
DIST_URL = f"{STATIC_URL}/dist"
IMMUTABLE = "public, max-age=31536000, immutable"


class CachingStaticFiles(StaticFiles):
    """StaticFiles that marks Vite's content-hashed assets as immutable."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        parts = Path(path).parts
        if parts[:2] == ("dist", "assets") and len(parts) > 2 and response.status_code in (200, 304):
            response.headers["Cache-Control"] = IMMUTABLE
        return response


@dataclass
class AssetConfig:
    production: bool
    manifest: dict | None = None
    manifest_path: Path | None = None
    dev_url: str = "http://localhost:5173"

    def tags(self) -> str:
        if not self.production:
            return (
                f'<script type="module" src="{self.dev_url}/@vite/client"></script>\n'
                f'<script type="module" src="{self.dev_url}/{ENTRY}"></script>'
            )
        if not self.manifest or ENTRY not in self.manifest:
            return "<!-- front-end assets are not configured: run npm run build -->"
        chunk = self.manifest[ENTRY]
        out = [
            f'<link rel="stylesheet" href="{DIST_URL}/{html.escape(css)}">' for css in chunk.get("css", [])
        ]
        for imported in chunk.get("imports", []):
            dep = self.manifest.get(imported)
            if dep:
                out.append(f'<link rel="modulepreload" href="{DIST_URL}/{html.escape(dep["file"])}">')
        out.append(f'<script type="module" src="{DIST_URL}/{html.escape(chunk["file"])}"></script>')
        return "\n".join(out)


def normalise_manifest(raw: dict) -> dict:
    """Re-key the Vite entry chunk to ENTRY, whatever the source path it was built from."""
    manifest = dict(raw)
    if ENTRY not in manifest:
        entries = [key for key, chunk in raw.items() if chunk.get("isEntry")]
        if entries:
            manifest[ENTRY] = raw[entries[0]]
    return manifest


def _write_normalised(manifest: dict, target: Path) -> Path:
    data = json.dumps(manifest, indent=2, sort_keys=True)
    try:
        target.write_text(data, encoding="utf-8")
        return target
    except OSError as exc:
        fd, name = tempfile.mkstemp(prefix="inertia-manifest-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        log.info("build dir is read-only (%s); wrote normalised manifest to %s", exc, name)
        return Path(name)


def load_assets(static_dir: Path, production: bool, dev_url: str) -> AssetConfig:
    config = AssetConfig(production=production, dev_url=dev_url)
    if not production:
        return config
    raw_path = static_dir / "dist" / ".vite" / "manifest.json"
    try:
        raw = json.loads(raw_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("no built Vite manifest at %s (%s); assets left unconfigured, run npm run build", raw_path, exc)
        return config
    config.manifest = normalise_manifest(raw)
    config.manifest_path = _write_normalised(config.manifest, raw_path.with_name("inertia-manifest.json"))
    return config
