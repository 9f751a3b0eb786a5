"""Each loaded case's client latencies over time, the command's steps marked, as one PNG per case.

Where a stall happens shows at a glance: a restart that queued requests is a
spike at the batch's mark; a failed request is a red cross. Needs matplotlib
(``pip install -e '.[bench]'``); without it nothing is drawn and the bench says so.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path


def _name(row: dict, suffix: str | None) -> str:
    case = re.sub(r"[^a-z0-9]+", "-", row["case"].lower()).strip("-")
    extra = "-" + re.sub(r"[^0-9a-z]+", "", suffix.lower()) if suffix else ""
    return f"{row['hosts']}-hosts{extra}-{case}.png"


def draw(rows: list[dict], directory: Path, suffix: str | None = None) -> list[Path]:
    """One PNG per row that ran with clients; the paths written."""
    loaded = [row for row in rows if row.get("samples")]
    if not loaded:
        return []
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: no plots drawn: matplotlib is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return []
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for row in loaded:
        started = row["started"]
        figure, axes = plt.subplots(figsize=(11, 4.5), dpi=100)
        for name, samples in sorted(row["samples"].items()):
            answered = [(at - started, seconds * 1000) for at, seconds, ok in samples if ok]
            failed = [(at - started, seconds * 1000) for at, seconds, ok in samples if not ok]
            if answered:
                axes.plot(*zip(*answered), ".", markersize=3, label=name)
            if failed:
                axes.plot(*zip(*failed), "x", color="red", markersize=8, label=f"{name} failed")
        top = axes.get_ylim()[1]
        for mark in row.get("timeline", []):
            at = mark["at"] - started
            axes.axvline(at, color="grey", linewidth=0.6, linestyle="--")
            axes.text(at, top, " " + mark["step"][:48], rotation=90, va="top", ha="left", fontsize=6, color="dimgrey")
        axes.set_xlabel("seconds since the command started")
        axes.set_ylabel("request latency, ms")
        axes.set_title(f"{row['case']}, {row['hosts']} host(s): wall {row['wall']:.1f} s, "
                       f"{row.get('failed', 0)} of {row.get('requests', 0)} requests failed", fontsize=10)
        axes.legend(loc="upper right", fontsize=7)
        figure.tight_layout()
        path = directory / _name(row, suffix)
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written
