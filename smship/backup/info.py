"""``pgbackrest info`` as rows people and CI can read."""

from __future__ import annotations

import time
from typing import Any


def _when(epoch: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch)) if epoch else "-"


def _size(count: int | None) -> str:
    if count is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return str(count)


def backup_rows(stanza: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backup in the repository, oldest first."""
    rows = []
    for item in stanza.get("backup", []):
        stamp, info = item.get("timestamp", {}), item.get("info", {})
        rows.append({"label": item.get("label"), "type": item.get("type"),
                     "started": _when(stamp.get("start")), "finished": _when(stamp.get("stop")),
                     "database_size": info.get("size"), "repository_size": (info.get("repository") or {}).get("size"),
                     "wal_start": (item.get("archive") or {}).get("start"),
                     "wal_stop": (item.get("archive") or {}).get("stop"), "error": bool(item.get("error"))})
    return rows


def summary(stanza: dict[str, Any]) -> dict[str, Any]:
    status = stanza.get("status", {})
    archive = [{"id": a.get("id"), "min": a.get("min"), "max": a.get("max")} for a in stanza.get("archive", [])]
    return {"stanza": stanza.get("name"), "status": status.get("message"), "status_code": status.get("code"),
            "archive": archive}


def table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'label':<36} {'type':<5} {'started':<21} {'finished':<21} {'db size':>10} {'stored':>10}"]
    for row in rows:
        lines.append(f"{row['label']:<36} {row['type']:<5} {row['started']:<21} {row['finished']:<21} "
                     f"{_size(row['database_size']):>10} {_size(row['repository_size']):>10}"
                     + ("  ERROR" if row["error"] else ""))
    return lines
