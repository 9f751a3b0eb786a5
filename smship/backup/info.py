"""``pgbackrest info`` as rows people and CI can read."""

from __future__ import annotations

import time
from typing import Any

from smship.remote.client import BackupEntry, StanzaInfo


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


def backup_rows(stanza: StanzaInfo) -> list[dict[str, Any]]:
    """One row per backup in the repository, oldest first."""
    return [{"label": b.label, "type": b.type, "started": _when(b.started), "finished": _when(b.stopped),
             "database_size": b.database_size, "repository_size": b.repository_size,
             "wal_start": b.wal_start, "wal_stop": b.wal_stop, "error": b.error} for b in stanza.backups]


def summary(stanza: StanzaInfo) -> dict[str, Any]:
    archive = [{"id": a.id, "min": a.min, "max": a.max} for a in stanza.archives]
    return {"stanza": stanza.name, "status": stanza.status_message, "status_code": stanza.status_code,
            "archive": archive}


def table(backups: list[BackupEntry]) -> list[str]:
    lines = [f"{'label':<36} {'type':<5} {'started':<21} {'finished':<21} {'db size':>10} {'stored':>10}"]
    for b in backups:
        lines.append(f"{b.label:<36} {b.type:<5} {_when(b.started):<21} {_when(b.stopped):<21} "
                     f"{_size(b.database_size):>10} {_size(b.repository_size):>10}"
                     + ("  ERROR" if b.error else ""))
    return lines
