"""Keeps one lab host's systemd-nspawn running, detached from whoever started it.

    python3 -m smship.lab.supervise --pidfile P --log L --cgroup DIR... -- systemd-nspawn ...

The first process forks a supervisor and exits as soon as nspawn has started, printing
the supervisor's PID, so the caller never leaves a zombie behind. The supervisor puts
itself in the host's own cgroups (nspawn --keep-unit creates its sub-cgroups next to
itself, so every host needs its own), runs nspawn, records nspawn's PID in the pidfile
and runs it again when it exits with 133 (a reboot inside the host). Any other exit
ends the supervisor; it then removes the pidfile and writes the exit code next to it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REBOOT_EXIT = 133


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="smship.lab.supervise")
    p.add_argument("--pidfile", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--cgroup", action="append", default=[])
    p.add_argument("command", nargs=argparse.REMAINDER)
    ns = p.parse_args(argv)
    if ns.command and ns.command[0] == "--":
        ns.command = ns.command[1:]
    if not ns.command:
        p.error("no command to supervise")
    return ns


def _supervise(ns: argparse.Namespace, ready_fd: int) -> int:
    os.setsid()
    # Let go of the caller's pipes: it waits for them to close.
    null_fd = os.open(os.devnull, os.O_RDWR)
    log_fd = os.open(ns.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null_fd)
    os.close(log_fd)
    for cgroup in ns.cgroup:
        Path(cgroup, "cgroup.procs").write_text(f"{os.getpid()}\n")
    pidfile = Path(ns.pidfile)
    exitfile = pidfile.with_suffix(".exit")
    exitfile.unlink(missing_ok=True)
    code = 1
    with open(ns.log, "ab", buffering=0) as log, open(os.devnull, "rb") as devnull:
        while True:
            try:
                proc = subprocess.Popen(ns.command, stdin=devnull, stdout=log, stderr=log)
            except OSError as exc:
                log.write(f"smship: cannot start {ns.command[0]}: {exc}\n".encode())
                code = 127
                break
            tmp = pidfile.with_suffix(".tmp")
            tmp.write_text(f"{proc.pid}\n")
            os.replace(tmp, pidfile)
            if ready_fd >= 0:
                os.write(ready_fd, f"{os.getpid()}\n".encode())
                os.close(ready_fd)
                ready_fd = -1
            code = proc.wait()
            if code != REBOOT_EXIT:
                break
            log.write(b"smship: host rebooted; starting it again\n")
    pidfile.unlink(missing_ok=True)
    exitfile.write_text(f"{code}\n")
    if ready_fd >= 0:
        os.close(ready_fd)
    return code


def main(argv: list[str] | None = None) -> int:
    ns = _parse(sys.argv[1:] if argv is None else argv)
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        try:
            code = _supervise(ns, write_fd)
        except BaseException as exc:  # noqa: BLE001 - report, never return into caller
            try:
                with open(ns.log, "ab") as log:
                    log.write(f"smship: supervisor failed: {exc!r}\n".encode())
            finally:
                os._exit(1)
        os._exit(code & 0xFF)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as ready:
        line = ready.readline().decode().strip()
    if not line:
        sys.stderr.write(f"supervisor did not start the host; see {ns.log}\n")
        return 1
    sys.stdout.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
