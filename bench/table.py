"""The bench's figures as one Markdown table."""

from __future__ import annotations

PHASES = ("build", "ship", "install", "migrate", "roll")
HEADER = ["hosts", "case", "wall s", *[f"{p} s" for p in PHASES], "web batch overhead s", "SSH trips/host",
          "bytes/host", "floor s", "x floor", "failed/requests", "p99 ms", "max ms lb", "max ms direct",
          "smship CPU s", "smship peak MB", "hosts CPU s", "clients' cores", "CPU bound s"]


def _ms(value) -> str:
    return "" if value is None else f"{value:.0f}"


def _seconds(value) -> str:
    return "" if value is None else f"{value:.1f}"


def _overhead(batches: list[dict]) -> str:
    """The web batches' mean time beyond their slowest host's own activation (restart and gate)."""
    extra = [b["seconds"] - b["on_hosts"] for b in batches if ": web" in b["title"] and b.get("on_hosts") is not None]
    return f"{sum(extra) / len(extra):.2f}" if extra else ""


def _cpu_bound(row: dict) -> float | None:
    """The least wall time the command's own CPU (the hosts' and smship's, less what serving the steady
    clients took meanwhile) allows on this machine's cores, which they all share."""
    if row.get("hosts_cpu") is None or row.get("cpu") is None or not row.get("cores"):
        return None
    clients = (row.get("clients_cpu_rate") or 0) * row["wall"]
    return (row["hosts_cpu"] - clients + row["cpu"]) / row["cores"]


def _row(row: dict) -> list[str]:
    phases = row.get("phases") or {}
    trips = row.get("round_trips")
    floor = row.get("floor")
    ratio = f"{row['wall'] / floor:.1f}" if floor else ""
    requests = f"{row['failed']}/{row['requests']}" if "requests" in row else ""
    return [str(row["hosts"]), row["case"] + ("" if row.get("ok", True) else " (FAILED)"), _seconds(row["wall"]),
            *[_seconds(phases.get(p)) for p in PHASES], _overhead(row.get("batches") or []),
            "" if not trips else (str(trips[0]) if trips[0] == trips[1] else f"{trips[0]}-{trips[1]}"),
            "" if row.get("bytes_per_host") is None else f"{row['bytes_per_host']:,}",
            _seconds(floor), ratio, requests, _ms(row.get("p99_ms")), _ms(row.get("max_ms_lb")),
            _ms(row.get("max_ms_direct")),
            "" if row.get("cpu") is None else f"{row['cpu']:.2f}",
            "" if row.get("peak_rss_mb") is None else f"{row['peak_rss_mb']:.0f}",
            "" if row.get("hosts_cpu") is None else f"{row['hosts_cpu']:.1f}",
            "" if row.get("clients_cpu_rate") is None else f"{row['clients_cpu_rate']:.2f}", _seconds(_cpu_bound(row))]


def render(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_row(row)) + " |" for row in rows]
    return "\n".join(lines)
