"""The program smship runs on the db host for backups: pgBackRest and Postgres, as root.

Sent like the host agent (``python3 -I -S -c SOURCE``, one JSON request on stdin,
one JSON answer on stdout), standard library only.  Postgres commands run
as the postgres user through ``runuser``; SQL values travel on stdin as psql
variables, never inside the SQL text.

Requests (``cluster`` gives version, name, port and database; ``stanza`` the repository):
  archive_status  pg_stat_archiver, archive_mode, and ``pgbackrest check``
  restore_point   ``pg_create_restore_point(name)``
  backup          ``pgbackrest backup`` (full, diff or incr)
  info            ``pgbackrest info`` as JSON
  verify          restore the latest backup and all archived WAL into a scratch
                  cluster, start it, count rows, report the recovered time, drop it
  restore         restore the real cluster to a time or a restore point (delta), start it
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

# No "-": systemd reads it as "/" in the postgresql@VERSION-CLUSTER unit name.
SCRATCH = "smship_verify"

COUNT_ROWS = """
SELECT coalesce(json_object_agg(table_name, n), '{}')::text FROM (
  SELECT table_name,
         (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I.%I', table_schema, table_name),
                                              false, true, '')))[1]::text::bigint AS n
  FROM information_schema.tables
  WHERE table_schema = 'public' AND table_type = 'BASE TABLE') AS counts;
"""


class Failed(Exception):
    pass


def _run(argv, stdin=None, timeout=None):
    proc = subprocess.run(argv, input=stdin.encode() if stdin is not None else None, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def _condense(text):
    """One line from a tool's error output.

    pgBackRest's errors carry a whole HTTP exchange: keep its ERROR line
    (without the colon that starts the dump) and the S3 error code; otherwise the
    last lines.
    """
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    errors = [l.rstrip(":") for l in lines if l.startswith("ERROR:")]
    codes = ["S3 error " + m.group(1) for m in re.finditer(r"<Code>([^<]+)</Code>", text)]
    return "; ".join(errors[:1] + codes[:1]) or " / ".join(lines[-3:]) or "no output"


def _must(argv, what, stdin=None, timeout=None):
    code, out, err = _run(argv, stdin, timeout)
    if code != 0:
        raise Failed("%s failed (exit %d): %s" % (what, code, _condense(err or out)))
    return out


def _as_postgres(*argv):
    return ["runuser", "-u", "postgres", "--"] + list(argv)


def _sql(port, database, sql, variables=None, what="psql"):
    """One value from ``sql`` (psql variables from ``variables``, fed on stdin)."""
    argv = _as_postgres("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-p", str(port), "-d", database)
    for name, value in (variables or {}).items():
        argv += ["-v", "%s=%s" % (name, value)]
    return _must(argv, what, stdin=sql).strip()


def _pgbackrest(stanza, *args):
    return _as_postgres("pgbackrest", "--stanza=" + stanza, *args)


def _info(stanza):
    out = _must(_pgbackrest(stanza, "--output=json", "info"), "pgbackrest info", timeout=300)
    stanzas = json.loads(out or "[]")
    return stanzas[0] if stanzas else {}


def switch_and_wait(port, timeout=120):
    """Close the current WAL segment and wait until the archiver has shipped it.

    Without this, the newest commits sit in a partly filled segment that is
    not in the repository, and a restore would silently miss them.
    """
    wanted = _sql(port, "postgres", "SELECT pg_walfile_name(pg_switch_wal());", what="pg_switch_wal")
    deadline = time.monotonic() + timeout
    while True:
        row = json.loads(_sql(port, "postgres", "SELECT row_to_json(a)::text FROM pg_stat_archiver a;"))
        if (row.get("last_archived_wal") or "") >= wanted:
            return wanted
        if time.monotonic() > deadline:
            raise Failed("WAL segment %s was not archived within %ds (last archived: %s, last failed: %s)"
                         % (wanted, timeout, row.get("last_archived_wal"), row.get("last_failed_wal")))
        time.sleep(0.5)


def archive_status(request):
    cluster, stanza = request["cluster"], request["stanza"]
    query = ("SELECT json_build_object('archive_mode', current_setting('archive_mode'), "
             "'wal_level', current_setting('wal_level'), 'archived_count', archived_count, "
             "'last_archived_wal', last_archived_wal, 'last_archived_time', last_archived_time, "
             "'failed_count', failed_count, 'last_failed_wal', last_failed_wal, "
             "'last_failed_time', last_failed_time, "
             "'failing', last_failed_time IS NOT NULL AND (last_archived_time IS NULL "
             "OR last_failed_time > last_archived_time))::text FROM pg_stat_archiver;")
    status = json.loads(_sql(cluster["port"], "postgres", query, what="pg_stat_archiver"))
    code, out, err = _run(_pgbackrest(stanza, "check"), timeout=300)
    status["check_ok"] = code == 0
    status["check_output"] = _condense(err or out) if code else ""
    status["ok"] = status["archive_mode"] == "on" and not status["failing"] and code == 0
    return status


def restore_point(request):
    name = request["name"]
    lsn = _sql(request["cluster"]["port"], "postgres", "SELECT pg_create_restore_point(:'name');",
               {"name": name}, what="pg_create_restore_point")
    return {"ok": True, "name": name, "lsn": lsn}


def backup(request):
    stanza, kind = request["stanza"], request.get("type", "full")
    started = time.time()
    _must(_pgbackrest(stanza, "--type=" + kind, "backup"), "pgbackrest backup", timeout=request.get("timeout", 7200))
    info = _info(stanza)
    latest = (info.get("backup") or [{}])[-1]
    return {"ok": True, "seconds": round(time.time() - started, 1), "label": latest.get("label"),
            "type": latest.get("type")}


def info(request):
    return {"ok": True, "info": _info(request["stanza"])}


def _free_port(first=54390, last=54399):
    for port in range(first, last + 1):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise Failed("no free port in %d-%d for the scratch cluster" % (first, last))


def _wait_promoted(port, timeout):
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        code, out, err = _run(_as_postgres("psql", "-X", "-At", "-p", str(port), "-d", "postgres", "-c",
                                           "SELECT pg_is_in_recovery()"))
        if code == 0 and out.strip() == "f":
            return
        last = (err or out).strip()
        time.sleep(0.5)
    raise Failed("Postgres on port %d did not finish recovery within %ds: %s" % (port, timeout, last))


def _major(cluster):
    """The cluster's major: the inventory's, else the newest one with a cluster of that name here."""
    if cluster.get("version"):
        return str(cluster["version"])
    try:
        found = [int(n) for n in os.listdir("/etc/postgresql")
                 if n.isdigit() and os.path.isdir(os.path.join("/etc/postgresql", n, cluster["name"]))]
    except OSError:
        found = []
    if not found:
        raise Failed("no Postgres cluster %r in /etc/postgresql; run smship provision" % cluster["name"])
    return str(max(found))


def _drop_scratch(version):
    if os.path.isdir("/etc/postgresql/%s/%s" % (version, SCRATCH)):
        _run(["pg_dropcluster", "--stop", str(version), SCRATCH])


def verify(request):
    cluster, stanza = request["cluster"], request["stanza"]
    version = _major(cluster)
    _drop_scratch(version)                      # a previous run that died half way
    segment = switch_and_wait(cluster["port"])
    port = _free_port()
    began = time.time()
    try:
        _must(["pg_createcluster", "-p", str(port), version, SCRATCH], "pg_createcluster")
        data = "/var/lib/postgresql/%s/%s" % (version, SCRATCH)
        _must(["sh", "-c", 'find "$1" -mindepth 1 -delete', "smship", data], "emptying " + data)
        # archive-mode=off: the copy must never push WAL into the real repository.
        _must(_pgbackrest(stanza, "--pg1-path=" + data, "--archive-mode=off", "restore"), "pgbackrest restore",
              timeout=request.get("timeout", 3600))
        _must(["pg_ctlcluster", version, SCRATCH, "start"], "starting the scratch cluster")
        _wait_promoted(port, request.get("timeout", 600))
        recovered = _sql(port, "postgres", "SELECT pg_last_xact_replay_timestamp();")
        counts = json.loads(_sql(port, cluster["database"], COUNT_ROWS, what="counting rows"))
        latest = (_info(stanza).get("backup") or [{}])[-1]
        return {"ok": True, "backup": latest.get("label"), "recovered_to": recovered, "rows": counts,
                "last_segment": segment, "port": port, "seconds": round(time.time() - began, 1)}
    finally:
        _drop_scratch(version)


def restore(request):
    cluster, stanza = request["cluster"], request["stanza"]
    version, name = _major(cluster), cluster["name"]
    unit = "postgresql@%s-%s" % (version, name)
    _, active, _ = _run(["systemctl", "is-active", unit])
    if active.strip() == "active":
        # What is still in the open segment must reach the repository first.
        try:
            switch_and_wait(cluster["port"], timeout=60)
        except Failed:
            pass
    _must(["systemctl", "stop", unit], "stopping " + unit)
    target = ["--type=name", "--target=" + request["point"]] if request.get("point") else \
        ["--type=time", "--target=" + request["time"]]
    _must(_pgbackrest(stanza, "--delta", *target, "--target-action=promote", "restore"), "pgbackrest restore",
          timeout=request.get("timeout", 7200))
    _must(["systemctl", "start", unit], "starting " + unit)
    _wait_promoted(cluster["port"], request.get("timeout", 600))
    recovered = _sql(cluster["port"], "postgres", "SELECT pg_last_xact_replay_timestamp();")
    return {"ok": True, "recovered_to": recovered}


OPS = {"archive_status": archive_status, "restore_point": restore_point, "backup": backup, "info": info,
       "verify": verify, "restore": restore}


def main():
    request = json.loads(sys.stdin.read())
    try:
        answer = OPS[request["op"]](request)
    except Failed as exc:
        answer = {"ok": False, "error": str(exc)}
    sys.stdout.write(json.dumps(answer, default=str))


if __name__ == "__main__":
    main()
