"""What rsync said: its ``--stats`` counts, and one line naming the host when it failed."""

from __future__ import annotations

import re

from smship.ssh.values import Endpoint, RsyncResult, _host_port, _last_line


_STATS = {
    "bytes_sent": re.compile(r"^Total bytes sent:\s*([\d,.]+)", re.M),
    "bytes_received": re.compile(r"^Total bytes received:\s*([\d,.]+)", re.M),
    "files_transferred": re.compile(
        r"^Number of regular files transferred:\s*([\d,.]+)", re.M),
}


def parse_rsync_stats(output: str) -> dict[str, int]:
    """Pull byte and file counts out of ``rsync --stats`` output."""
    stats = {}
    for key, pattern in _STATS.items():
        match = pattern.search(output)
        digits = re.sub(r"\D", "", match.group(1)) if match else ""
        stats[key] = int(digits) if digits else 0
    return stats


def _ssh_reason(stderr: str) -> str | None:
    """ssh's own complaint in rsync's stderr, if ssh is what failed.

    rsync prefixes its messages with "rsync"; what remains came from ssh
    (or from a remote sudo, which we report separately).
    """
    lines = [line.strip() for line in stderr.splitlines()
             if line.strip() and not line.startswith(("rsync", "sudo:", "@"))]
    if not lines:
        return None
    key_lines = [line for line in lines if "has changed" in line
                 or "verification failed" in line]
    if key_lines:
        return " ".join(key_lines)
    for line in lines:
        if line.startswith(("ssh:", "Permission denied", "channel")):
            return line
    return lines[-1]


def _rsync_error(name: str, endpoint: Endpoint,
                 result: RsyncResult) -> str | None:
    if result.exit_code == 0:
        return None
    last = _last_line(result.stderr) or f"exit {result.exit_code}"
    sudo_lines = [line.strip() for line in result.stderr.splitlines()
                  if line.startswith("sudo:")]
    if sudo_lines:
        return (f"{name}: {result.command}: sudo for the remote rsync "
                f"refused ({sudo_lines[0]}); grant {endpoint.user} "
                f"passwordless sudo (NOPASSWD)")
    # rsync reports ssh's death as 255, or as 12 when it notices the broken
    # stream first; either way, name the host and address like ConnectError.
    reason = _ssh_reason(result.stderr)
    if result.exit_code == 255 or (result.exit_code == 12 and reason
                                   and result.bytes_received == 0):
        return (f"{name} ({_host_port(endpoint.host, endpoint.port)}): "
                f"rsync's ssh failed: {reason or last}")
    # rsync's last line is a generic "error in file IO (code 11)"; the line
    # that says what went wrong ("write failed on ...: No space left on
    # device (28)") comes before it.
    cause = next((line.strip() for line in result.stderr.splitlines() if line.startswith("rsync: ")), last)
    return f"{name}: {result.command}: rsync exit {result.exit_code}: {cause}"
