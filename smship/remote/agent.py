"""The program smship runs on a host to read its state and apply changes.

It is sent as ``python3 -I -S -c SOURCE`` and reads one JSON request on stdin, so
a host needs nothing installed beyond Debian's python3, file contents and
secrets never appear on a command line, and a whole provisioning step costs
one SSH round trip.  Standard library only: it runs on the host's Python.

Requests (one per call; the answer is one JSON document on stdout):
  facts     what provisioning compares: packages, users, paths, services, checks
  apply     files, links, directories, commands, web slot restarts, in order (see ``apply``)
  inspect   the release layout: live release, releases on disk, free space, lock
  lock / unlock   the environment's deploy lock (a complete directory renamed into place)
  activate  switch ``current``, restart units, wait for health, revert on failure;
            a web tier starts the release in its idle slot and switches to it once
            healthy (see ``_activate_web``); a release that passed its gate is
            appended to the activation log
  prune     remove old releases
  audit     append one line to the deploy log
  keystate  which key generation the env file and each running unit hold (fingerprints only)
  setenv    replace one line of the env file, nothing else
  status    live release, units with state and uptime, readiness, disk
  checkfacts  what ``smship check`` judges: env file, units, journal, nginx, certificate
  hostos    the distribution, the app's interpreter, Postgres and nginx versions (installed or offered)
"""

import grp
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import threading
import time


class _OnFirstUse:
    """A module imported when first used. The agent is a new process on every call, and most requests
    need few modules: importing all of them cost a call more CPU than most requests' own work."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        module = __import__(self._name)
        globals()[self._name] = module
        return getattr(module, attribute)


base64 = _OnFirstUse("base64")
hashlib = _OnFirstUse("hashlib")
shlex = _OnFirstUse("shlex")
shutil = _OnFirstUse("shutil")
socket = _OnFirstUse("socket")
tempfile = _OnFirstUse("tempfile")


def _run(argv, stdin=None):
    proc = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def _start(argv, stdin=None):
    """Start ``argv`` and go on; the returned function waits for it and gives what ``_run`` gives."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def finished():
        out, err = proc.communicate(stdin)
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
    return finished


def _in_thread(fn, *args):
    """Run ``fn(*args)`` beside the caller; the returned function waits for its value (or its exception)."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:
            box["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()

    def finished():
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]
    return finished


def _installed_packages(names):
    """{name: installed} for each package, as dpkg's database says; kept while that database is unchanged."""
    def ask(asked):
        code, out, _ = _run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n"] + asked)
        installed = {line.split()[0]: line.split()[1].startswith("ii")
                     for line in out.splitlines() if len(line.split()) > 1}
        # dpkg-query says 1 when it knows some names not: an answer all the same.
        return code in (0, 1), {name: installed.get(name, False) for name in asked}
    return _kept_answers(INSTALLED_PACKAGES, DPKG_STATE, names, ask)


def _path_fact(path, expected_sha):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"type": "absent"}
    fact = {"mode": "%04o" % stat.S_IMODE(st.st_mode)}
    try:
        fact["owner"] = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        fact["owner"] = str(st.st_uid)
    try:
        fact["group"] = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        fact["group"] = str(st.st_gid)
    if stat.S_ISLNK(st.st_mode):
        fact.update(type="link", target=os.readlink(path))
    elif stat.S_ISDIR(st.st_mode):
        fact["type"] = "dir"
    else:
        with open(path, "rb") as handle:
            data = handle.read()
        fact.update(type="file", sha256=hashlib.sha256(data).hexdigest())
        # The old text is only sent back when it differs and is not secret,
        # so --diff can show it without a second round trip.
        if expected_sha is not None and expected_sha != fact["sha256"] and len(data) < 256 * 1024:
            fact["content"] = data.decode(errors="replace")
    return fact


def _batchable(check):
    """Whether a check can share one shell with others: it reads no stdin and only its exit status counts."""
    return not check.get("stdin") and check.get("output") is None


def _shell_line(argv):
    """One check as a line of the shared shell, in a subshell of its own, as it would run alone: a
    ``sh -c SCRIPT NAME ARGS`` check is its script run with ARGS as ``$@``; any other argv is run as
    written (a shell builtin such as ``test`` answers as its program would)."""
    if len(argv) >= 3 and argv[0] == "sh" and argv[1] == "-c":
        run = "set -- %s; eval %s" % (shlex.join(argv[4:]), shlex.quote(argv[2]))
    else:
        run = shlex.join(argv)
    return "(%s) </dev/null >/dev/null 2>&1; echo \"$?\"" % run


def _start_checks(checks):
    """Start every check; the returned function waits for them all and gives {name: (status, stdout, stderr)}.

    Checks that read nothing and whose output does not count share one ``sh``: on a small host, starting a
    program costs more than most checks' own work, and a host has a dozen of them."""
    shared = [name for name, check in checks.items() if _batchable(check)]
    alone = {name: _start(check["argv"], base64.b64decode(check["stdin"]) if check.get("stdin") else None)
             for name, check in checks.items() if name not in shared}
    batch = _start(["sh", "-c", "\n".join(_shell_line(checks[name]["argv"]) for name in shared)]) if shared else None

    def finished():
        ran = {name: started() for name, started in alone.items()}
        if batch:
            statuses = batch()[1].split()
            for name, status in zip(shared, statuses):
                ran[name] = (int(status), "", "")
            # A shell that died part-way: what it did not answer runs alone.
            for name in shared[len(statuses):]:
                ran[name] = _run(checks[name]["argv"])
        return {name: ran[name] for name in checks}
    return finished


def _service_states(names):
    """{name: (enabled, active)} as ``systemctl is-enabled`` and ``is-active`` print them, from one
    ``systemctl show`` for all."""
    shown = _in_thread(_units_show, names, ["UnitFileState", "ActiveState"])

    def finished():
        states = {}
        for name, props in zip(names, shown()):
            enabled, active = props.get("UnitFileState"), props.get("ActiveState")
            # A SysV script's unit says "generated"; is-enabled asks the script's links instead.
            if enabled is None or enabled == "generated":
                enabled = _run(["systemctl", "is-enabled", name])[1].strip()
            if active is None:
                active = _run(["systemctl", "is-active", name])[1].strip()
            states[name] = (enabled, active)
        return states
    return finished


def facts(request):
    # Every question that runs a program is started at once and answered as it finishes: the slowest
    # (a psql, apt-cache) sets the pace, not their sum. They only read.
    hostos_answer = _in_thread(hostos, request["hostos"]) if "hostos" in request else None
    packages = request.get("packages", [])
    package_query = _in_thread(_installed_packages, packages) if packages else None
    checks_finished = _start_checks(request.get("checks", {}))
    services_finished = _service_states(request.get("services", []))
    users = {}
    for name in request.get("users", []):
        try:
            entry = pwd.getpwnam(name)
            users[name] = {"uid": entry.pw_uid, "home": entry.pw_dir}
        except KeyError:
            users[name] = None
    checks = {}
    for name, (code, out, _) in checks_finished().items():
        wanted = request["checks"][name].get("output")
        checks[name] = code == 0 and (wanted is None or out.strip() == wanted)
    release = {}
    for key in ("ID", "VERSION_ID", "VERSION_CODENAME"):
        release[key.lower()] = ""
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                key, _, value = line.strip().partition("=")
                if key.lower() in release:
                    release[key.lower()] = value.strip('"')
    except OSError:
        pass
    answer = {
        "os": release,
        "pending_handlers": _pending_handlers(),
        "packages": package_query() if package_query else {},
        "users": users,
        "paths": {path: _path_fact(path, sha) for path, sha in request.get("paths", {}).items()},
        "services": {name: {"enabled": enabled, "active": active}
                      for name, (enabled, active) in services_finished().items()},
        "checks": checks,
    }
    if hostos_answer:
        # Asked beside the facts when smship rendered the roles from what the host said last time:
        # the same round trip confirms (or refutes) that guess.
        answer["hostos"] = hostos_answer()
    return answer


def _chown(path, owner, group, follow=True):
    uid = pwd.getpwnam(owner).pw_uid if owner else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    if follow:
        os.chown(path, uid, gid)
    else:
        os.lchown(path, uid, gid)


def _write_file(action):
    path = action["path"]
    directory = os.path.dirname(path) or "/"
    data = base64.b64decode(action["content"])
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".smship-")
    try:
        # mkstemp creates the file 0600: a secret is never readable by others
        # before its final mode and owner are set.
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _chown(temp, action.get("owner"), action.get("group"))
        os.chmod(temp, int(action["mode"], 8))
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _link(action):
    path, target = action["path"], action["target"]
    temp = os.path.join(os.path.dirname(path), ".smship-link-" + os.path.basename(path))
    if os.path.lexists(temp):
        os.unlink(temp)
    os.symlink(target, temp)
    os.replace(temp, path)


def _directory(action):
    path = action["path"]
    if not os.path.isdir(path):
        os.makedirs(path)
    _chown(path, action.get("owner"), action.get("group"))
    os.chmod(path, int(action["mode"], 8))


def _absent(action):
    path = action["path"]
    if os.path.isdir(path) and not os.path.islink(path):
        os.rmdir(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _command(action):
    stdin = base64.b64decode(action["stdin"]) if action.get("stdin") else None
    code, out, err = _run(action["argv"], stdin)
    if code != 0:
        raise RuntimeError("%s exited %d: %s" % (action.get("label") or action["argv"][0], code, (err or out).strip()[-2000:]))


def _web_slots(action):
    """A handler's restart of the web tier: the live release started in the idle slot beside the
    serving one and switched to only once healthy (``_activate_web``, as a deploy does it)."""
    web, root = action["web"], action["root"]
    serving, release = _serving_slot(web), _current(root)
    # As try-restart: a host whose web tier does not run (never deployed, or stopped) stays so.
    if not serving or not release or not _started(web["service"] % serving):
        return
    outcome = _activate_web({"root": root, "release": release, "web": web, "health": action["health"]}, release)
    if outcome["ok"]:
        return
    new = _other(serving)
    left = ("the old process (slot %s) kept serving" % serving if outcome.get("kept")
            else "slot %s does not serve either: %s" % (serving, outcome.get("revert_reason")))
    raise RuntimeError("the new web process (slot %s, release %s) failed its gate and was stopped: %s; %s"
                       % (new, release, outcome.get("reason"), left))


def _worker_slots(action):
    """A handler's restart of the Celery worker: the serving worker's release started in the idle slot
    beside it and switched to once it works (``_activate_worker``, as a deploy does it); the old one
    finishes its tasks on its own time."""
    worker = action["worker"]
    serving = _serving_worker_slot(worker)
    # As try-restart: a host whose worker does not run (never deployed, or stopped) stays so.
    if not serving or not _started(worker["service"] % serving):
        return
    release = _linked(worker["release"] % serving)
    template = worker["service"] % ""
    outcome = _activate_worker({"root": action["root"], "release": release, "worker": worker, "restart": [template],
                                "ready": {template: action["ready"]}, "in_place": True}, release)
    if not outcome["ok"]:
        raise RuntimeError("the new worker (release %s) failed and was stopped: %s; the old one (slot %s) "
                           "kept running" % (release, outcome.get("reason"), serving))


def _started(unit):
    """Whether ``unit`` runs, or is starting: what ``systemctl try-restart`` would restart."""
    return _run(["systemctl", "is-active", unit])[1].strip() in ("active", "activating", "reloading")


def _other(slot):
    """The slot that is not ``slot`` (a or b); slot a when none is."""
    return "b" if slot == "a" else "a"


APPLY = {"file": _write_file, "link": _link, "directory": _directory, "absent": _absent, "command": _command,
         "web slots": _web_slots, "worker slots": _worker_slots}


# Handlers owed by an apply that failed part way: its files are already in
# place, so the next run sees no change, yet must still run the handlers.
PENDING_HANDLERS = "/var/lib/smship/pending-handlers.json"


def _pending_handlers():
    try:
        with open(PENDING_HANDLERS) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return []


def _set_pending_handlers(names):
    if not names:
        if os.path.exists(PENDING_HANDLERS):
            os.unlink(PENDING_HANDLERS)
        return
    os.makedirs(os.path.dirname(PENDING_HANDLERS), exist_ok=True)
    _write_file({"path": PENDING_HANDLERS, "mode": "0600", "owner": "root", "group": "root",
                 "content": base64.b64encode(json.dumps(sorted(names)).encode()).decode()})


def apply(request):
    """Apply actions in order; stop at the first failure and say which."""
    handlers = request.get("handlers", [])
    if handlers:
        _set_pending_handlers(set(_pending_handlers()) | set(handlers))
    done = []
    for action in request["actions"]:
        try:
            APPLY[action["kind"]](action)
        except Exception as exc:  # reported to smship, which fails the host
            return {"ok": False, "done": done, "failed": action.get("label") or action.get("path"), "error": str(exc)}
        done.append(action.get("label") or action.get("path"))
    if handlers:
        _set_pending_handlers(set(_pending_handlers()) - set(handlers))
    if "hostos" in request:
        # What the host is now (packages were installed): smship remembers it for the next run.
        return {"ok": True, "done": done, "hostos": hostos(request["hostos"])}
    return {"ok": True, "done": done}


def _current(root):
    return _linked(os.path.join(root, "current"))


def _linked(path):
    """The release a link names, or None."""
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


# A release's last file, written once its venv is in place; smship.release.hostcmds reads this name.
COMPLETE_MARKER = ".smship-complete"


def inspect(request):
    root = request["root"]
    releases_dir = os.path.join(root, "releases")
    try:
        names = sorted(os.listdir(releases_dir))
    except FileNotFoundError:
        names = []
    releases = [{"id": name, "complete": os.path.exists(os.path.join(releases_dir, name, COMPLETE_MARKER))}
                for name in names if not name.startswith(".")]
    lock = None
    try:
        with open(os.path.join(request["lock"], "holder.json")) as handle:
            lock = json.load(handle)
    except (OSError, ValueError):
        lock = {"token": None} if os.path.isdir(request["lock"]) else None
    # Where releases land: it may be a volume of its own.
    probe = next(p for p in (releases_dir, root, "/") if os.path.isdir(p))
    vfs = os.statvfs(probe)
    answer = {"current": _current(root), "releases": releases, "lock": lock,
              "free_bytes": vfs.f_bavail * vfs.f_frsize, "exists": os.path.isdir(root),
              "activations": _activations(request.get("activation_log"))}
    if request.get("background"):   # the worker and beat's own link
        answer["background"] = _linked(request["background"])
    if request.get("workdirs"):     # where each unit runs from, and whom its stop signals (None: not installed)
        answer["workdirs"], answer["kill_modes"] = {}, {}
        units = request["workdirs"]
        for unit, shown in zip(units, _units_show(units, ["LoadState", "WorkingDirectory", "KillMode"])):
            loaded = shown.get("LoadState") == "loaded"
            answer["workdirs"][unit] = shown.get("WorkingDirectory", "") if loaded else None
            answer["kill_modes"][unit] = shown.get("KillMode", "") if loaded else None
    if request.get("content"):      # what deploy compares a new build with
        manifest = _manifest(root, answer["current"]) if answer["current"] else None
        answer["content"] = (manifest or {}).get("content")
        # The commit it was built from; none for a working tree's build.
        answer["commit"] = None if (manifest or {}).get("dirty", True) else manifest.get("git_sha")
    if request.get("python"):       # what the release's wheels must fit
        libc = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
        answer["interpreter"] = {"version": _interpreter_version(request["python"]), "machine": os.uname().machine,
                                 "glibc": libc[-1] if libc else ""}
    return answer


def _manifest(root, release):
    """The release's release.json, or None when it cannot be read."""
    try:
        with open(os.path.join(root, "releases", release, "release.json")) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _activations(path):
    """[release, previous] per line of the activation log, oldest first; None when there is no log."""
    if not path:
        return None
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    found = []
    for line in lines:
        try:
            entry = json.loads(line)
            found.append([entry["release"], entry.get("previous")])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash mid-write
    return found


def _record_activation(path, release, previous):
    """Append ``release`` to the activation log (append-only, root's own file).

    A host deployed by an older smship has no log yet: the release live
    before this activation went live too, so it is recorded first.
    """
    if not path:
        return
    entries = []
    if not os.path.lexists(path) and previous and previous != release:
        entries.append({"release": previous, "recorded": "live before the log began"})
    elif previous == release and os.path.lexists(path):
        return  # another tier of the same host: already recorded
    entries.append({"release": release, "previous": previous})
    for entry in entries:
        entry["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    _append_record(path, "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in entries))


class NotRootsOwn(OSError):
    pass


def _roots_directory(fd, name):
    """Refuse a directory another user could change: its entries would be theirs to swap."""
    st = os.fstat(fd)
    sticky = st.st_mode & stat.S_ISVTX
    if st.st_uid not in (0, os.geteuid()) or (st.st_mode & 0o022 and not sticky):
        raise NotRootsOwn("%s is not root's own directory (owner uid %d, mode %04o): "
                          "refusing to keep a record there" % (name, st.st_uid, stat.S_IMODE(st.st_mode)))


def _open_record(path, flags, mode=0o640):
    """Open ``path`` walking down from / without following any link.

    Every directory on the way must be root's (no other user may write it)
    and the file itself is opened with O_NOFOLLOW, so a link planted by a
    less trusted user never sends root's write elsewhere.  Missing
    directories are created, root's and 0755.
    """
    parts = [part for part in path.split("/") if part]
    if not path.startswith("/") or not parts or ".." in parts:
        raise ValueError("a record's path must be absolute, without '..': %r" % path)
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        walked = ""
        for part in parts[:-1]:
            walked += "/" + part
            try:
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
            _roots_directory(fd, walked)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
    finally:
        os.close(fd)


def _append_record(path, text):
    fd = _open_record(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(fd, "a") as handle:
        handle.write(text)


def lock(request):
    """Take the lock: a directory holding its holder, renamed into place complete.

    The holder is written (and synced) in a directory of its own first; only
    then does one rename make it the lock.  A full disk or a crash leaves no
    lock at all, never a lock with no holder; of two takers, one rename wins.
    """
    path = request["path"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.isdir(path):
        return {"ok": False, "holder": _holder(path)}
    staging = tempfile.mkdtemp(dir=os.path.dirname(path), prefix=".%s.new-" % os.path.basename(path))
    try:
        fd = os.open(os.path.join(staging, "holder.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(request["holder"], handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(staging, path)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if os.path.isdir(path):     # another taker's rename won
            return {"ok": False, "holder": _holder(path)}
        return {"ok": False, "error": "%s: %s" % (path, exc.strerror or exc)}
    if request.get("drain_flag"):
        # Read under the lock, where no other deploy can drain or put back a host.
        return {"ok": True, "drained": _drained(request)}
    return {"ok": True}


def _holder(path):
    try:
        with open(os.path.join(path, "holder.json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def unlock(request):
    path = request["path"]
    holder = _holder(path)
    if request.get("force") or holder.get("token") == request["token"]:
        shutil.rmtree(path, ignore_errors=True)
        return {"ok": True}
    return {"ok": False, "holder": holder}


def _switch(root, release):
    _link({"path": os.path.join(root, "current"), "target": _complete_release(root, release)})


def _systemctl(*args):
    code, out, err = _run(["systemctl"] + list(args))
    if code != 0:
        raise RuntimeError("systemctl %s: %s" % (" ".join(args), (err or out).strip()[-500:]))


def _journal_has(unit, since, needle):
    _, out, _ = _run(["journalctl", "--no-pager", "-o", "cat", "-u", unit, "--since", "@%d" % int(since)])
    for line in out.splitlines():
        if needle in line:
            return line.strip()[:300]
    return None


# A health answer is a few bytes; one larger than this is refused, not read whole.
ANSWER_LIMIT = 1 << 20


def _connected(family, address, timeout, wrap=lambda sock: sock):
    """A stream socket connected to ``address`` (and ``wrap``-ped), closed again if that fails. Not
    create_connection: its getaddrinfo imports the IDNA codec, even for an address."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        return wrap(sock)
    except OSError:
        sock.close()
        raise


def _slot_socket(path, timeout):
    """A connection to a web slot's own socket: the new uvicorn alone answers it."""
    return _connected(socket.AF_UNIX, path, timeout)


def _nginx_socket(port, timeout):
    """A TLS connection to this host's own nginx. The name on its certificate is the site's, not
    127.0.0.1, and the point is the app, not TLS: no CA store is loaded (that alone cost more CPU
    than the check)."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return _connected(socket.AF_INET, ("127.0.0.1", port), timeout, context.wrap_socket)


def _read_until(sock, buffer, enough):
    """Receive into ``buffer`` until ``enough(buffer)``; False when the peer closed first."""
    while not enough(buffer):
        if len(buffer) > ANSWER_LIMIT:
            raise OSError("the answer is larger than %d bytes" % ANSWER_LIMIT)
        data = sock.recv(65536)
        if not data:
            return False
        buffer += data
    return True


def _chunked_body(sock, buffer):
    body = bytearray()
    while True:
        if not _read_until(sock, buffer, lambda b: b"\r\n" in b):
            raise OSError("the answer ended inside its chunked body")
        line_end = buffer.index(b"\r\n")
        size = bytes(buffer[:line_end]).split(b";")[0].strip()
        if not size or size.strip(b"0123456789abcdefABCDEF"):
            raise OSError("a chunk's size is not hexadecimal: %r" % size[:20])
        size = int(size, 16)
        del buffer[:line_end + 2]
        if size == 0:
            return bytes(body)      # what trailers follow are not read
        if len(body) + size > ANSWER_LIMIT:
            raise OSError("the answer is larger than %d bytes" % ANSWER_LIMIT)
        if not _read_until(sock, buffer, lambda b: len(b) >= size + 2):
            raise OSError("the answer ended inside a chunk")
        body += buffer[:size]
        del buffer[:size + 2]


def _http_get(sock, path, headers):
    """(status, body) of one HTTP/1.1 GET on ``sock``; an answer that is not HTTP raises OSError.

    The health checks' own client: http.client's imports alone (the email package) cost a status
    call more CPU than everything else it does."""
    fields = "".join("%s: %s\r\n" % item for item in headers.items())
    sock.sendall(("GET %s HTTP/1.1\r\n%sConnection: close\r\n\r\n" % (path, fields)).encode("latin-1"))
    buffer = bytearray()
    if not _read_until(sock, buffer, lambda b: b"\r\n\r\n" in b):
        raise OSError("the connection closed before the answer's headers ended")
    head_end = buffer.index(b"\r\n\r\n")
    status_line, *field_lines = bytes(buffer[:head_end]).split(b"\r\n")
    del buffer[:head_end + 4]
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit() or rest[3:4] not in (b"", b" "):
        raise OSError("not an HTTP answer: %r" % status_line[:80])
    answer = {}
    for line in field_lines:
        name, _, value = line.partition(b":")
        answer[name.strip().lower()] = value.strip()
    if answer.get(b"transfer-encoding", b"").lower().endswith(b"chunked"):
        return int(code), _chunked_body(sock, buffer)
    if b"content-length" in answer:
        length = answer[b"content-length"]
        if not length.isdigit() or int(length) > ANSWER_LIMIT:
            raise OSError("an answer's Content-Length is %r" % length[:20])
        length = int(length)
        if not _read_until(sock, buffer, lambda b: len(b) >= length):
            raise OSError("the answer ended before its Content-Length")
        return int(code), bytes(buffer[:length])
    _read_until(sock, buffer, lambda b: False)      # its end is the connection's
    return int(code), bytes(buffer)


def _get(health, path):
    """GET ``path`` from a slot's socket (``health["socket"]``), else through this host's own nginx;
    an HTTP protocol error is raised as an OSError, as a refused connection is."""
    headers = {"Host": health["host"], "User-Agent": "smship-health", "Accept-Encoding": "identity"}
    if any("\r" in text or "\n" in text for text in [path, health["host"]]):
        raise OSError("a line break in a health check's path or host")    # the inventory refuses them
    if health.get("socket"):
        # As nginx would send it: the app sees the scheme and client it sees in production.
        headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-For": "127.0.0.1"})
        sock = _slot_socket(health["socket"], 5)
    else:
        sock = _nginx_socket(health["port"], 5)
    try:
        return _http_get(sock, path, headers)
    finally:
        sock.close()


# What the smpy JSON "status" must say on each endpoint (expect: status).
_STATUS_WANTED = {"live": ("alive",), "ready": ("healthy",)}


def judge_endpoint(endpoint, which, status, body, accept_degraded=False):
    """(healthy, what it answered) for one answer of a health endpoint.

    ``endpoint``: {path, expect, body}; expect ``status``: 200 with the JSON
    ``status`` smpy answers (``alive`` live, ``healthy`` ready, also
    ``degraded`` when accepted); ``2xx``: any 2xx; ``body``: a 2xx whose
    body, stripped, is exactly ``endpoint["body"]``.
    """
    text = body.decode("utf-8", "replace").strip()
    shown = text if len(text) <= 80 else text[:77] + "..."
    if endpoint["expect"] == "2xx":
        return 200 <= status < 300, "HTTP %s" % status
    if endpoint["expect"] == "body":
        return 200 <= status < 300 and text == endpoint["body"], "HTTP %s %r" % (status, shown)
    try:
        state = json.loads(text).get("status")
    except (ValueError, AttributeError):
        state = None
    wanted = _STATUS_WANTED[which] + (("degraded",) if which == "ready" and accept_degraded else ())
    if status == 200 and state in wanted:
        return True, state
    return False, "HTTP %s with status %r" % (status, state) if state is not None else "HTTP %s %r" % (status, shown)


# The last line of a Python traceback: "RuntimeError: ...", "ModuleNotFoundError: ...".
_CRASH_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)(:|$)")


def _crash_lines(unit, since):
    """The last lines of the tracebacks the unit logged since ``since`` ("RuntimeError: ...")."""
    _, out, _ = _run(["journalctl", "--no-pager", "-o", "cat", "-u", unit, "--since", "@%d" % int(since)])
    return [line.strip()[:300] for line in out.splitlines() if _CRASH_LINE.match(line.strip())]


def _crash_cause(unit, since):
    found = _crash_lines(unit, since)
    return found[-1] if found else "see journalctl -u %s" % unit


# How long a unit may keep logging a crash without answering before it counts
# as crashed: a server that restarts its own dead workers never fails in systemd.
CRASH_GRACE = 5


def wait_healthy(health, since, restarts_before=None):
    """Poll live then ready until healthy, a fatal sign, or the timeout.

    A crash fails at once, with the crash's own words, rather than after the
    whole timeout with only a timed-out health check to show: systemd
    restarted the unit on its own, or it failed, or it keeps logging an
    exception for CRASH_GRACE seconds without answering the live endpoint.
    """
    deadline = time.monotonic() + health["timeout"]
    degraded = health.get("accept_degraded", False)
    last, crashing_since = "no answer yet", None
    unit = health["unit"]
    # The old process's last words (an exception while it stopped) are not the new one's crash.
    already = len(_crash_lines(unit, since))
    while True:
        sm010 = _journal_has(unit, since, "SM010")
        if sm010:
            return {"ok": False, "reason": "SM010 in the journal: " + sm010}
        code, active, _ = _run(["systemctl", "is-active", unit])
        if active.strip() == "failed" or (restarts_before is not None and _restarts(unit) != restarts_before):
            return {"ok": False, "reason": "%s crashed on start: %s" % (unit, _crash_cause(unit, since))}
        live = False
        endpoint = health["live"]
        try:
            live, said = judge_endpoint(endpoint, "live", *_get(health, endpoint["path"]))
            if live:
                endpoint = health["ready"]
                ready, said = judge_endpoint(endpoint, "ready", *_get(health, endpoint["path"]),
                                             accept_degraded=degraded)
                if ready:
                    return {"ok": True, "status": said}
            last = "%s answered %s" % (endpoint["path"], said)
        except OSError as exc:
            last = "%s: %s" % (endpoint["path"], exc)
        found = [] if live else _crash_lines(unit, since)[already:]
        crash = found[-1] if found else None
        if crash and crashing_since is None:
            crashing_since = time.monotonic()
        if crash and time.monotonic() - crashing_since >= CRASH_GRACE:
            return {"ok": False, "reason": "%s crashed on start: %s" % (unit, crash)}
        if time.monotonic() >= deadline:
            journal = "; the journal says: " + crash if crash else ""
            return {"ok": False, "reason": "not healthy after %ss: %s%s" % (health["timeout"], last, journal)}
        time.sleep(0.5)


def _restarts(unit):
    _, out, _ = _run(["systemctl", "show", "-p", "NRestarts", "--value", unit])
    return out.strip()


# How long a unit that logged its ready line must then stay up: a crash just after start still shows.
READY_GRACE = 1.0


def _logged(invocation, line):
    """When the run ``invocation`` logged ``line`` (within any message: plain or JSON logs), in seconds
    since the epoch; None: not yet."""
    if not invocation:
        return None
    _, out, _ = _run(["journalctl", "--no-pager", "-o", "short-unix", "_SYSTEMD_INVOCATION_ID=" + invocation])
    for entry in out.splitlines():
        stamp, _, message = entry.partition(" ")
        if line in message:
            try:
                return float(stamp)
            except ValueError:    # a continuation line of a message logged over several
                return time.time()
    return None


def _watch_units(units, settle, ready, restarts_before, invocations, since, when_ready=None):
    """Units without a health URL are good when they stay up ``settle`` seconds after their restart or,
    for a unit with a ready line (what it logs once it works: Celery's "<hostname> ready."),
    READY_GRACE seconds after logging it. All are watched at once, from the restart on. ``when_ready()``
    is called once every unit with a ready line has logged it, as their grace begins.

    "activating" is not enough: a unit crash-looping under Restart=on-failure
    spends most of its time there, so a restart counted by systemd fails it.
    """
    began, ready_at, pending = time.monotonic(), {}, list(units)
    while True:
        now = time.monotonic()
        for unit in list(pending):
            shown = _unit_show(unit, ["ActiveState", "SubState", "NRestarts"])
            state = shown.get("ActiveState", "unknown")
            # auto-restart: the process died and systemd waits RestartSec to start it again.
            if state not in ("active", "activating", "reloading") or shown.get("SubState") == "auto-restart" \
                    or shown.get("NRestarts", "").strip() != restarts_before[unit]:
                return {"ok": False, "reason": "%s crashed after the restart (%s): %s" % (unit, state, _crash_cause(unit, since))}
            logged = _logged(invocations.get(unit), ready[unit]) \
                if state == "active" and unit not in ready_at and ready.get(unit) else None
            if logged is not None:
                # The grace counts from when it logged the line, not from when this poll read it.
                ready_at[unit] = min(now, now - (time.time() - logged))
            if state == "active" and unit in ready_at and now - ready_at[unit] >= READY_GRACE:
                pending.remove(unit)
            elif now - began >= settle:
                if state != "active":
                    return {"ok": False, "reason": "%s is still %s %ss after the restart" % (unit, state, settle)}
                pending.remove(unit)
        if when_ready is not None and all(u in ready_at for u in units if ready.get(u)):
            when_ready()
            when_ready = None
        if not pending:
            return {"ok": True}
        # Every quarter second, or at once when a unit's grace ends sooner.
        graces = [ready_at[u] + READY_GRACE - time.monotonic() for u in pending if u in ready_at]
        time.sleep(max(0.0, min([0.25] + graces)))


def _point(request, release):
    """Make ``release`` the one the units start from: their own link for the worker and beat (with
    ``current`` too on a host without a web tier), else ``current``; none for an ``in_place`` restart
    (the release the units run already)."""
    if request.get("in_place"):
        return
    if request.get("background"):
        _link({"path": request["background"]["link"], "target": _complete_release(request["root"], release)})
    if _records(request):
        _switch(request["root"], release)


def _records(request):
    """Whether this activation moves ``current``, and so writes the activation log."""
    background = request.get("background")
    return not request.get("in_place") and (not background or background["moves_current"])


def _background_refusal(request):
    """Why the worker and beat cannot take a release here: a unit still runs from ``current`` (an
    older smship's unit file), so moving their link would restart it on the old release; or the
    worker unit of an smship before worker slots is still there."""
    link, worker = request["background"]["link"], request.get("worker")
    if worker and os.path.exists(os.path.join("/etc/systemd/system", worker["legacy"])):
        return ("this host still runs %s, the worker unit of an older smship; run 'smship provision' "
                "to hand it over to the worker slots" % worker["legacy"])
    for unit in request["restart"]:
        if worker and unit == worker["service"] % "":
            continue
        runs_from = _unit_show(unit, ["WorkingDirectory"]).get("WorkingDirectory", "")
        if runs_from != link:
            return ("%s runs from %s, not %s (a unit file of an older smship); run 'smship provision' "
                    "to move it to its own link" % (unit, runs_from or "nowhere", link))
    return None


def _start_and_check(request, release):
    since = time.time() - 1
    _point(request, release)
    if request.get("health"):
        _systemctl("restart", *request["restart"])
        restarts = _unit_show(request["health"]["unit"], ["NRestarts"]).get("NRestarts", "").strip()
        return wait_healthy(request["health"], since, restarts)
    return _restart_watched(request["restart"], request.get("settle", 5), request.get("ready") or {}, since)


def _restart_watched(units, settle, ready, since):
    """Restart ``units`` and watch them come up (see ``_watch_units``)."""
    return _watch_units(units, settle, ready, *_restarted(units), since)


def _restarted(units):
    """Restart ``units``; each one's NRestarts and InvocationID once restarted."""
    restarts, invocations = {}, {}
    # One call: systemd restarts the units side by side (a Celery worker's warm shutdown does not hold
    # back the beat's restart on a host that runs both).
    if units:
        _systemctl("restart", *units)
    for unit in units:
        # The new run's id: journald tags every line that run logs with it.
        shown = _unit_show(unit, ["NRestarts", "InvocationID"])
        restarts[unit], invocations[unit] = shown.get("NRestarts", "").strip(), shown.get("InvocationID", "").strip()
    return restarts, invocations


def _drain(drain):
    """Out of the lb before the restart (see smship.steps.roll.Drainer): the flag this host's nginx reads."""
    _write_file({"path": drain["flag"], "content": drain["note"], "owner": "root", "group": "root", "mode": "0644"})


def _undrain(drain, outcome):
    """Back in the lb once this host serves a healthy release again, whoever drained it."""
    if outcome["ok"] or outcome.get("reverted"):
        try:
            _absent({"path": drain["flag"]})
        except OSError as exc:
            outcome["undrain_error"] = "%s: %s" % (drain["flag"], exc.strerror or exc)
    outcome["drained"] = os.path.lexists(drain["flag"])


def activate(request):
    """Make ``release`` live; on any failure go back to the previous one. With ``drain``, the host
    is out of the lb for the restart (``note``: drain it now) and back in once it serves again."""
    began = time.monotonic()
    background = request.get("background")
    previous = _linked(background["link"]) if background else _current(request["root"])
    drain = request.get("drain")
    if request.get("web") or background:
        refused = _web_refusal(request["web"]) if request.get("web") else _background_refusal(request)
        if refused:
            return {"ok": False, "untouched": True, "previous": previous, "release": request["release"],
                    "reason": refused, "took": time.monotonic() - began}
    if drain and drain.get("note"):
        try:
            _drain(drain)
        except OSError as exc:
            return {"ok": False, "untouched": True, "previous": previous, "release": request["release"],
                    "reason": "could not drain it from the load balancer (%s: %s)" % (drain["flag"], exc.strerror or exc),
                    "drained": os.path.lexists(drain["flag"]), "took": time.monotonic() - began}
    if request.get("web"):
        outcome = _activate_web(request, previous)
    elif request.get("worker") and request["worker"]["service"] % "" in request["restart"]:
        outcome = _activate_worker(request, previous)
    else:
        outcome = _activate(request, previous)
    if drain:
        _undrain(drain, outcome)
    outcome["took"] = time.monotonic() - began
    return outcome


def _activate(request, previous):
    try:
        outcome = _start_and_check(request, request["release"])
    except Exception as exc:
        outcome = {"ok": False, "reason": str(exc)}
    outcome.update(previous=previous, release=request["release"])
    if outcome["ok"] and _records(request):
        _record_live(request, outcome, request["release"], previous)
    if outcome["ok"] or not previous or previous == request["release"]:
        return outcome
    try:
        back = _start_and_check(request, previous)
        outcome["reverted"] = back["ok"]
        if not back["ok"]:
            outcome["revert_reason"] = back["reason"]
        elif _records(request):
            _record_live(request, outcome, previous, previous)
    except Exception as exc:
        outcome.update(reverted=False, revert_reason=str(exc))
    return outcome


# -- web slots -------------------------------------------------------------------
# ``web`` (smship.layout.Layout.web_slots): the link nginx connects through
# (``upstream``), and per slot (``%s``: a or b) its release link, service,
# socket unit and socket. The slot the link points at serves; the other is idle.

def _serving_slot(web):
    return _slot_named(web["upstream"], web["socket"])


def _slot_named(link, pattern):
    """The slot (a or b) whose ``pattern`` (``%s``: the slot) ``link`` points at; None: none, or no link."""
    try:
        target = os.readlink(link)
    except OSError:
        return None
    return next((slot for slot in ("a", "b") if target == pattern % slot), None)


def _units(request):
    """``request["units"]``, where the web slots' template names (``APP-web@.service`` and ``.socket``)
    stand for the serving slot's units (slot a's before any slot served), the worker slots' template
    (``APP-worker@.service``) likewise for the serving worker slot, and ``request["postgres_unit"]``
    (``postgresql@%s-main.service``) for this host's cluster's."""
    web, worker = request.get("web"), request.get("worker")
    slot = (_serving_slot(web) or "a") if web else None
    named = {web["service"] % "": web["service"] % slot, web["socket_unit"] % "": web["socket_unit"] % slot} if web else {}
    if worker:
        named[worker["service"] % ""] = worker["service"] % (_serving_worker_slot(worker) or "a")
    if request.get("postgres_unit"):
        named[request["postgres_unit"]] = _postgres_unit(request["postgres_unit"])
    return [named.get(unit, unit) for unit in request["units"]]


def _postgres_unit(template):
    """The unit of the cluster smship.hostos.HostOS.postgres_major picks (the newest cluster, else the
    newest server); without either, Debian's wrapper unit, which says Postgres is not there."""
    clusters, servers = _postgres_majors()
    found = clusters or servers
    return template % max(found) if found else "postgresql.service"


def _web_refusal(web):
    """Why this host cannot take a slot activation: it still runs the web unit of an smship before slots."""
    for unit in web["legacy"]:
        if os.path.exists(os.path.join("/etc/systemd/system", unit)):
            return ("this host still runs %s, the web unit of an older smship; run 'smship provision' "
                    "to hand it over to the web slots" % unit)
    return None


def _activate_web(request, previous):
    """Start ``release`` in the idle slot, gate it on its own socket, then switch nginx's link to it
    and stop the other slot: the serving slot keeps serving throughout. A new slot that fails its
    gate is stopped; nginx never sent it a request, and ``current`` never moved."""
    web, release = request["web"], request["release"]
    serving = _serving_slot(web)
    slot = _other(serving)
    unit = web["service"] % slot
    old = web["service"] % serving if serving else None
    outcome, boot = {"previous": previous, "release": release}, _BootSwitch(unit, old)
    try:
        target = _complete_release(request["root"], release)
        _await_stopped(unit)
        since = time.time() - 1
        _link({"path": web["release"] % slot, "target": target})
        _systemctl("restart", unit)
        restarts = _unit_show(unit, ["NRestarts"]).get("NRestarts", "").strip()
        # Which slot starts at boot, and systemd's reload, change while the new one starts.
        boot.begin()
        health = dict(request["health"], unit=unit, socket=web["socket"] % slot)
        outcome.update(wait_healthy(health, since, restarts))
    except Exception as exc:
        outcome.update(ok=False, reason=str(exc))
    if not outcome["ok"]:
        _stop_slot(web, slot, outcome)
        boot.undo(outcome)
        serves = bool(serving) and _run(["systemctl", "is-active", web["service"] % serving])[1].strip() == "active"
        outcome.update(reverted=serves, kept=serves)
        if not serves:
            outcome["revert_reason"] = ("slot %s was not running either" % serving) if serving \
                else "no web slot served before"
        return outcome
    try:
        _switch(request["root"], release)
        _link({"path": web["upstream"], "target": web["socket"] % slot})
    except Exception as exc:
        # nginx still reaches the serving slot: so must ``current`` name its release.
        if previous:
            _switch(request["root"], previous)
        _stop_slot(web, slot, outcome)
        boot.undo(outcome)
        outcome.update(ok=False, reason="could not switch to slot %s: %s" % (slot, exc), reverted=bool(serving),
                       kept=bool(serving))
        return outcome
    _record_live(request, outcome, release, previous)
    if serving:
        _await_backlog(web["socket"] % serving)
        # It finishes its in-flight requests on its own time: the roll does not wait for the longest.
        _stop_slot(web, serving, outcome, wait=False)
    boot.finish(outcome)
    return outcome


def _boot_with(unit, instead):
    """At boot ``unit`` starts (None: none), not the slot ``instead`` (None: no other slot served).
    Changed links leave every unit "changed on disk" (systemctl warns of it) until systemd reloads:
    the reload is started here, and its outcome is ``_reloaded``'s."""
    if unit:
        _run(["systemctl", "enable", "--quiet", "--no-reload", unit])
    if instead:
        _run(["systemctl", "disable", "--quiet", "--no-reload", instead])
    return _start(["systemctl", "daemon-reload"])


class _BootSwitch:
    """An activation's ``_boot_with(unit, instead)``: begun once, at the moment the activation picks,
    then waited for (:meth:`finish`), or undone (:meth:`undo`) when the new slot failed."""

    def __init__(self, unit, instead):
        self.unit, self.instead, self._reload = unit, instead, None

    def begin(self):
        if self._reload is None:
            self._reload = _boot_with(self.unit, self.instead)

    def finish(self, outcome):
        self.begin()
        _reloaded(self._reload, outcome)

    def undo(self, outcome):
        """The slot that served before starts at boot again (nothing to undo when it never began)."""
        if self._reload is not None:
            _reloaded(self._reload, outcome)
            _reloaded(_boot_with(self.instead, self.unit), outcome)


def _reloaded(reloaded, outcome):
    code, _, err = reloaded()
    if code != 0:
        outcome["reload_error"] = "systemctl daemon-reload: %s" % err.strip()[-300:]


# -- worker slots ----------------------------------------------------------------
# ``worker`` (smship.layout.Layout.worker_slots): the link naming the serving slot
# (``live``), and per slot (``%s``: a or b) its release link and service.

def _serving_worker_slot(worker):
    return _slot_named(worker["live"], worker["release"])


def _activate_worker(request, previous):
    """Start ``release`` in the idle worker slot beside the serving one (and restart the other units,
    the beat), watch them come up, then make the new slot the serving one and ask the old to stop
    without waiting: its running tasks finish while the new worker already takes new ones. A new slot
    that fails is stopped; the serving one never stopped."""
    worker, release = request["worker"], request["release"]
    template = worker["service"] % ""
    serving = _serving_worker_slot(worker)
    slot = _other(serving)
    unit = worker["service"] % slot
    others = [u for u in request["restart"] if u != template]
    ready = {(unit if u == template else u): line for u, line in (request.get("ready") or {}).items()}
    settle = request.get("settle", 5)
    old = worker["service"] % serving if serving else None
    outcome, boot = {"previous": previous, "release": release}, _BootSwitch(unit, old)
    try:
        target = _complete_release(request["root"], release)
        # The idle slot may still be finishing the tasks it ran when the last deploy asked it to stop.
        _await_stopped(unit, worker.get("stop_wait") or STOP_WAIT)
        since = time.time() - 1
        _link({"path": worker["release"] % slot, "target": target})
        _point(request, release)
        restarted = _restarted([unit] + others)
        # Which slot starts at boot, and systemd's reload, change in the grace after the new worker's ready
        # line: a quiet second, where during its start they would take CPU from its imports.
        outcome.update(_watch_units([unit] + others, settle, ready, *restarted, since, when_ready=boot.begin))
    except Exception as exc:
        outcome.update(ok=False, reason=str(exc))
    if not outcome["ok"]:
        _stop_units([unit], outcome, wait=False)
        boot.undo(outcome)
        if not previous or previous == release:
            return outcome
        try:
            _point(request, previous)
            back = _restart_watched(others, settle, ready, time.time() - 1) if others else {"ok": True}
            serves = serving and _run(["systemctl", "is-active", worker["service"] % serving])[1].strip() == "active"
            outcome["reverted"] = back["ok"] and bool(serves)
            if not back["ok"]:
                outcome["revert_reason"] = back["reason"]
            elif not serves:
                outcome["revert_reason"] = ("worker slot %s does not run either" % serving) if serving \
                    else "no worker slot ran before"
            elif _records(request):
                _record_live(request, outcome, previous, previous)
        except Exception as exc:
            outcome.update(reverted=False, revert_reason=str(exc))
        return outcome
    _link({"path": worker["live"], "target": worker["release"] % slot})
    if serving:
        # Warm: its running tasks finish (up to TimeoutStopSec) on their own time, not the deploy's.
        _stop_units([old], outcome, wait=False)
    if _records(request):
        _record_live(request, outcome, release, previous)
    boot.finish(outcome)
    return outcome


def _complete_release(root, release):
    target = os.path.join(root, "releases", release)
    if not os.path.exists(os.path.join(target, COMPLETE_MARKER)):
        raise RuntimeError("release %s is not completely shipped to this host" % release)
    return target


# How long a slot nginx no longer connects to may take to accept what reached it before the switch.
BACKLOG_WAIT = 2.0


def _await_backlog(path):
    """Until the slot's uvicorn has accepted every connection made before the switch: stopped with one
    still queued, that request would be lost; accepted, it is served before uvicorn exits."""
    deadline = time.monotonic() + BACKLOG_WAIT
    while time.monotonic() < deadline:
        # "u_str LISTEN <queued> <backlog> <path> ...": the accept queue is the third field.
        code, out, _ = _run(["ss", "-xlnH", "src", path])
        fields = out.split()
        if code != 0 or len(fields) < 5 or fields[4] != path or fields[2] == "0":
            return
        time.sleep(0.01)


# A slot stopped without waiting may still finish requests when the next activation wants it.
STOP_WAIT = 35


def _await_stopped(unit, wait=STOP_WAIT):
    """Until ``unit`` is no longer stopping (its graceful shutdown is bounded by TimeoutStopSec), at most ``wait`` s."""
    deadline = time.monotonic() + wait
    while _run(["systemctl", "is-active", unit])[1].strip() == "deactivating" and time.monotonic() < deadline:
        time.sleep(0.1)


def _stop_slot(web, slot, outcome, wait=True):
    """Stop a slot and its socket (uvicorn finishes the requests it holds); a failure is reported, not fatal."""
    _stop_units([web["service"] % slot, web["socket_unit"] % slot], outcome, wait)


def _stop_units(units, outcome, wait=True):
    """Stop ``units`` gracefully; a failure is reported in ``outcome``, not fatal."""
    code, out, err = _run(["systemctl", "stop"] + ([] if wait else ["--no-block"]) + units)
    if code != 0:
        outcome["stop_error"] = "systemctl stop %s: %s" % (units[0], (err or out).strip()[-300:])


def _record_live(request, outcome, release, previous):
    """The activation log's line for a release that passed its gate; a failure to write it is reported, not fatal."""
    try:
        _record_activation(request.get("activation_log"), release, previous)
    except OSError as exc:
        outcome["record_error"] = "%s: %s" % (request.get("activation_log"), exc)


def prune(request):
    root, keep = request["root"], request["keep"]
    releases_dir = os.path.join(root, "releases")
    protect = set(request.get("protect", [])) | {_current(root)} | {_linked(p) for p in request.get("links", [])}
    names = sorted(n for n in os.listdir(releases_dir) if not n.startswith("."))
    removed = []
    for name in names[:-keep] if keep else names:
        if name not in protect:
            shutil.rmtree(os.path.join(releases_dir, name))
            removed.append(name)
    return {"removed": removed}


def audit(request):
    """One line on root's deploy log (see :func:`_open_record`: never through another user's link)."""
    try:
        _append_record(request["path"], json.dumps(request["entry"], sort_keys=True) + "\n")
    except OSError as exc:
        return {"ok": False, "error": "%s: %s" % (request["path"], exc.strerror or exc)}
    return {"ok": True}


def _drained(request):
    """Whether a deploy left this web host drained from the lb (see smship.steps.roll.Drainer)."""
    return bool(request.get("drain_flag")) and os.path.exists(request["drain_flag"])


def status(request):
    """Live release, units with their state and uptime, readiness, drained from the lb, disk."""
    answer = inspect(request)
    units = {}
    names = _units(request)
    idle = _idle_slots(request)
    shown = _units_show(names + idle, ["ActiveState", "SubState", "ActiveEnterTimestampMonotonic", "LoadState"])
    for unit, props in zip(names + idle, shown):
        if unit in idle and props.get("ActiveState") not in RUNNING:
            continue
        since = int(props.get("ActiveEnterTimestampMonotonic") or 0) / 1e6
        up = time.clock_gettime(time.CLOCK_MONOTONIC) - since if since and props.get("ActiveState") == "active" else None
        units[unit] = {"state": props.get("ActiveState", "unknown"), "sub": props.get("SubState", ""),
                       "loaded": props.get("LoadState", ""), "uptime": up}
        if unit in idle:
            units[unit]["idle"] = True
    ready = None
    if request.get("health"):
        health = request["health"]
        try:
            _, ready = judge_endpoint(health["ready"], "ready", *_get(health, health["ready"]["path"]),
                                      accept_degraded=health.get("accept_degraded", False))
        except OSError as exc:
            ready = "unreachable: %s" % exc
    answer.update(units=units, ready=ready, drained=_drained(request))
    return answer


# The states of a unit whose process still runs (or is about to, or ends on its own time).
RUNNING = ("active", "activating", "deactivating", "reloading")


def _idle_slots(request):
    """The services of the web and worker slots that do not serve: listed by status while their process
    still runs (an old slot finishing its requests or tasks after a deploy switched away from it)."""
    web, worker = request.get("web"), request.get("worker")
    serving = [(web["service"], _serving_slot(web))] if web else []
    serving += [(worker["service"], _serving_worker_slot(worker))] if worker else []
    return [service % _other(slot) for service, slot in serving if slot]


# A key generation is named by a fingerprint: 48 bits of a hash over a string
# no other smship hash uses, so neither the key nor a hash reused elsewhere
# can be learned from it, yet two generations are told apart.
KEY_FINGERPRINT_DOMAIN = b"smship key fingerprint v1\0"


def key_fingerprint(name, value):
    if not value:
        return None
    return hashlib.sha256(KEY_FINGERPRINT_DOMAIN + name.encode() + b"\0" + value.encode()).hexdigest()[:12]


def _env_line_value(line, name):
    """The value of ``name`` on one EnvironmentFile line (as systemd unquotes it), else None."""
    key, sep, value = line.partition("=")
    if not sep or key.strip() != name:
        return None
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    return value


def _env_file_value(path, name):
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    found = None
    for line in lines:
        value = _env_line_value(line, name)
        if value is not None:
            found = value
    return found


def _process_value(unit, name):
    """``name`` in the environment of the unit's main process; (running, value)."""
    _, out, _ = _run(["systemctl", "show", "-p", "MainPID", "--value", unit])
    pid = int(out.strip() or 0)
    if not pid:
        return False, None
    prefix = name.encode() + b"="
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            items = handle.read().split(b"\0")
    except OSError:
        return False, None
    for item in items:
        if item.startswith(prefix):
            return True, item[len(prefix):].decode(errors="replace")
    return True, None


def keystate(request):
    name = request["name"]
    units = {}
    for unit in _units(request):
        running, value = _process_value(unit, name)
        units[unit] = {"running": running, "fingerprint": key_fingerprint(name, value)}
    return {"current": _current(request["root"]), "file": key_fingerprint(name, _env_file_value(request["env_file"], name)),
            "units": units}


def setenv(request):
    """Replace the ``name=`` line of the env file with ``line``; mode and owner stay."""
    path, name = request["env_file"], request["name"]
    try:
        st = os.stat(path)
        with open(path) as handle:
            lines = handle.read().splitlines(keepends=True)
    except FileNotFoundError:
        return {"ok": False, "error": "%s does not exist; run smship provision first" % path}
    if not any(_env_line_value(line, name) is not None for line in lines):
        return {"ok": False, "error": "%s has no %s line; run smship provision first" % (path, name)}
    replaced = [request["line"] + "\n" if _env_line_value(line, name) is not None else line for line in lines]
    _write_file({"path": path, "content": base64.b64encode("".join(replaced).encode()).decode(),
                 "owner": pwd.getpwuid(st.st_uid).pw_name, "group": grp.getgrgid(st.st_gid).gr_name,
                 "mode": "%04o" % stat.S_IMODE(st.st_mode)})
    return {"ok": True, "file": key_fingerprint(name, _env_file_value(path, name))}


def _read_env_file(path):
    """Every KEY=value line, unquoted as systemd reads it."""
    values = {}
    with open(path) as handle:
        for line in handle.read().splitlines():
            key = line.partition("=")[0].strip()
            if key and not key.startswith("#"):
                value = _env_line_value(line, key)
                if value is not None:
                    values[key] = value
    return values


def _env_facts(request):
    """Plain settings by value; secrets only judged here, never sent back."""
    try:
        values = _read_env_file(request["env_file"])
    except OSError as exc:
        return {"error": "%s: %s" % (request["env_file"], exc.strerror)}
    rule = {}
    # smship's own secret-key rule travels with the request, so the key is
    # judged where it lives and only the verdict crosses the wire.
    exec(compile(request["key_rule"], "secretkey", "exec"), rule)
    url = values.get(request["database_url"])
    return {"values": {k: values[k] for k in request["plain"] if k in values},
            "database_scheme": url.partition("://")[0] if url else None,
            "secret_key_weakness": rule["weakness"](values.get(request["secret_key"]), request["secret_key"])}


def _unit_show(unit, props):
    return _units_show([unit], props)[0]


def _units_show(units, props):
    """``props`` of each unit, from one ``systemctl show`` (its blocks come in the order asked); a unit
    whose block cannot be told apart gets {}."""
    if not units:
        return []
    code, out, _ = _run(["systemctl", "show", "--timestamp=unix"] + list(units) + ["-p", ",".join(props)])
    blocks = [dict(line.partition("=")[::2] for line in block.splitlines())
              for block in out.strip("\n").split("\n\n")] if code == 0 and out.strip() else []
    return blocks if len(blocks) == len(units) else [{} for _ in units]


def _unit_facts(unit):
    props = _unit_show(unit, ["ActiveState", "SubState", "LoadState", "MainPID", "ExecStart",
                              "ActiveEnterTimestamp", "InactiveExitTimestamp", "InvocationID"])
    cmdline = None
    pid = props.get("MainPID", "0")
    if pid not in ("", "0"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                cmdline = [a.decode(errors="replace") for a in handle.read().split(b"\0") if a]
        except OSError:
            pass
    # "Since the last start": the run that is active now (journald tags its lines with the run's id;
    # a time would be whole seconds, and take in the last lines of a crash the same second), else
    # the last attempt.
    invocation = props.get("InvocationID", "").strip()
    if props.get("ActiveState") == "active" and invocation:
        argv = ["journalctl", "--no-pager", "-o", "cat", "_SYSTEMD_INVOCATION_ID=" + invocation]
    else:
        since = props.get("InactiveExitTimestamp") or ""
        argv = ["journalctl", "--no-pager", "-o", "cat", "-u", unit]
        argv += ["--since", since] if since.startswith("@") else ["-b"]
    _, out, _ = _run(argv)
    sm010 = next((line.strip()[:300] for line in out.splitlines() if "SM010" in line), None)
    return {"state": props.get("ActiveState", "unknown"), "sub": props.get("SubState", ""),
            "loaded": props.get("LoadState", ""), "exec_start": props.get("ExecStart", ""),
            "cmdline": cmdline, "sm010": sm010}


def checkfacts(request):
    """Everything ``smship check`` needs from one host, in one round trip."""
    root = request["root"]
    current = _current(root)
    answer = {"current": current, "manifest": None, "frontend": None, "units": {}, "nginx": None,
              "certificate": None}
    if current:
        release = os.path.join(root, "releases", current)
        manifest = _manifest(root, current)
        if manifest is not None:
            answer["manifest"] = {"alembic_heads": manifest.get("alembic_heads", [])}
        if request["frontend_manifest"]:
            answer["frontend"] = os.path.isfile(os.path.join(release, request["frontend_manifest"]))
    answer["env"] = _env_facts(request) if request.get("env_file") else None
    for unit in _units(request):
        answer["units"][unit] = _unit_facts(unit)
    _, beat, _ = _run(["systemctl", "is-active", request["beat_unit"]])
    answer["beat"] = beat.strip()
    if request.get("nginx"):
        code, out, err = _run(["nginx", "-T"])
        answer["nginx"] = out if code == 0 else {"error": (err or out).strip()[-300:]}
    if request.get("certificate"):
        try:
            with open(request["certificate"]) as handle:
                answer["certificate"] = handle.read()
        except OSError:
            pass
    answer["drained"] = _drained(request)
    release = _os_release()
    answer["os"] = {"id": release.get("ID", ""), "version_id": release.get("VERSION_ID", ""),
                    "name": release.get("PRETTY_NAME", ""),
                    "python": _interpreter_version(request["python"]) if request.get("python") else None}
    # Log shipping: a line the collector must receive (smship check's log-format).
    answer["log_marker"] = None
    if request.get("log_marker"):
        code, _, err = _run(["logger", "-t", request["log_tag"], request["log_marker"]])
        answer["log_marker"] = {"logged": code == 0, "error": err.strip()[-300:],
                                "uploader": _run(["systemctl", "is-active", request["upload_unit"]])[1].strip()}
    return answer


def logmarkers(request):
    """Which of ``markers`` the collector has received, waiting up to ``wait`` seconds for them all."""
    wanted = set(request["markers"])
    deadline = time.monotonic() + request["wait"]
    while True:
        code, out, err = _run(["journalctl", "--no-pager", "--quiet", "-o", "cat", "--directory",
                               request["directory"], "-t", request["tag"], "--since", "-1h"])
        found = wanted & set(out.splitlines())
        if found == wanted or time.monotonic() >= deadline:
            return {"found": sorted(found), "error": err.strip()[-300:] if code else ""}
        time.sleep(0.5)


def _os_release():
    fields = {}
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            with open(path) as handle:
                for line in handle:
                    key, sep, value = line.strip().partition("=")
                    if sep:
                        fields[key] = value.strip().strip('"')
            break
        except OSError:
            continue
    return fields


def _sshd_ports():
    """The ports sshd listens on, from its effective configuration (a Port set in sshd_config or a
    drop-in, which smship's SSH config may reach without the inventory naming it); kept while sshd and
    its configuration are unchanged."""
    def ask(_):
        try:
            code, out, _ = _run([SSHD, "-T"])
        except OSError:
            return False, {"ports": []}
        if code != 0:
            return False, {"ports": []}
        return True, {"ports": sorted({int(words[1]) for words in (line.split() for line in out.splitlines())
                                       if len(words) == 2 and words[0] == "port" and words[1].isdigit()})}
    sources = _sshd_sources()
    if sources is None:
        return ask(None)[1]["ports"]
    return _kept_answers(SSHD_PORTS, sources, ["ports"], ask)["ports"]


def _sshd_sources():
    """sshd and every file of /etc/ssh; None when its configuration includes a file elsewhere (its
    answer is then never kept)."""
    config = SSHD_CONFIG
    for root, _, files in os.walk(config):
        for name in files:
            if not (name == "sshd_config" or name.endswith(".conf")):
                continue
            try:
                with open(os.path.join(root, name), errors="replace") as handle:
                    lines = handle.read().splitlines()
            except OSError:
                continue
            for line in lines:
                words = line.split()
                if words and words[0].lower() == "include" and any(
                        w.startswith("/") and not w.startswith(config + "/") for w in words[1:]):
                    return None
    return (SSHD, config)


def _apt_candidates(names):
    """The version apt would install for each package (None when it offers none).

    ``apt-cache policy`` reads all of apt's indexes on every call (a third of a
    second on a busy host, on every provision and check); its answers are kept
    with the state of every file they come from, and asked again once any of
    those changes.
    """
    def ask(asked):
        code, out, _ = _run(["apt-cache", "policy"] + asked)
        found, name = {}, None
        for line in out.splitlines():
            if line and not line[0].isspace() and line.endswith(":"):
                name = line[:-1]
            elif name and line.strip().startswith("Candidate:"):
                value = line.split(":", 1)[1].strip()
                found[name] = None if value == "(none)" else value
        return code == 0, {n: found.get(n) for n in asked}
    return _kept_answers(APT_CANDIDATES, APT_STATE, names, ask)


def _kept_answers(name, sources, asked, ask):
    """``ask(names)`` (whether the answer may be kept, and {name: answer}) for the names ``asked``.

    Answers are kept in root's cache under ``name`` with a digest of every file under ``sources``, and
    used while those files stay as they were; a name not asked before is asked. Nothing is kept when the
    files changed while the program ran.
    """
    asked = list(asked)
    fingerprint = _files_fingerprint(sources)
    kept = _read_kept(name)
    known = kept.get("answers", {}) if kept.get("fingerprint") == fingerprint else {}
    if all(n in known for n in asked):
        return {n: known[n] for n in asked}
    complete, answer = ask(asked)
    if complete and fingerprint == _files_fingerprint(sources):
        _keep(name, {"fingerprint": fingerprint, "answers": {**known, **answer}})
    return answer


# Where apt's candidates come from: its indexes, what dpkg installed, and apt's own configuration (sources,
# pins, options).
APT_STATE = ("/var/lib/apt/lists", "/var/lib/dpkg/status", "/etc/apt")
# What dpkg-query reads: the database and the updates dpkg has not merged into it yet.
DPKG_STATE = ("/var/lib/dpkg/status", "/var/lib/dpkg/updates")
# Root's own cache, shared with the bootstrap that keeps the agent's compiled code there.
AGENT_CACHE = "/var/cache/smship-agent"
APT_CANDIDATES = "apt-candidates.json"
INSTALLED_PACKAGES = "installed-packages.json"
SSHD_PORTS = "sshd-ports.json"
SSHD, SSHD_CONFIG = "/usr/sbin/sshd", "/etc/ssh"
NGINX_VERSION = "nginx-version.json"
NGINX = "/usr/sbin/nginx"


def _files_fingerprint(sources):
    """Each file under ``sources`` by path, inode, size, modification and change time, as one digest (a
    package upgrade keeps its files' own modification times, but renames new files into place)."""
    entries = []
    for base in sources:
        paths = [base] if not os.path.isdir(base) else [
            os.path.join(root, name) for root, _, files in os.walk(base) for name in files]
        for path in sorted(paths):
            try:
                info = os.lstat(path)
            except OSError:
                entries.append("%s -" % path)
                continue
            entries.append("%s %d %d %d %d" % (path, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns))
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def _trusted_cache():
    """``AGENT_CACHE`` when only the agent's own user (root) may write it, else None: nothing is kept
    or read there."""
    try:
        info = os.lstat(AGENT_CACHE)
    except OSError:
        return None
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077:
        return AGENT_CACHE
    return None


def _read_kept(name):
    home = _trusted_cache()
    if home is None:
        return {}
    try:
        with open(os.path.join(home, name)) as handle:
            kept = json.load(handle)
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) else {}


def _keep(name, value):
    home = _trusted_cache()
    if home is None:
        return
    try:
        _write_file({"path": os.path.join(home, name), "content": base64.b64encode(json.dumps(value).encode()),
                     "mode": "0600"})
    except OSError:
        pass


def _interpreter_version(path):
    try:
        if sys.executable and os.path.samefile(path, sys.executable):
            # The agent's own interpreter: its version is known without starting it again.
            return "%d.%d.%d" % sys.version_info[:3]
    except OSError:
        pass
    try:
        code, out, _ = _run([path, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    except OSError:
        return None
    return out.strip() if code == 0 else None


def _postgres_majors():
    """Majors with a 'main' cluster, and majors whose server is installed."""
    def majors(base, inner):
        try:
            names = os.listdir(base)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit() and os.path.exists(os.path.join(base, n, inner)))
    return majors("/etc/postgresql", "main"), majors("/usr/lib/postgresql", "bin/postgres")


def _nginx_installed():
    """nginx's version, or None when it is not installed; kept while its program is unchanged."""
    program = shutil.which("nginx") or NGINX

    def ask(_):
        try:
            code, out, err = _run([program, "-v"])
        except OSError:
            return True, {"version": None}
        match = re.search(r"nginx/([0-9.]+)", err + out)
        return code == 0, {"version": match.group(1) if match else None}
    return _kept_answers(NGINX_VERSION, (program,), ["version"], ask)["version"]


def hostos(request):
    release = _os_release()
    python = request.get("python") or "/usr/bin/python3"
    clusters, servers = _postgres_majors()
    asked = ["postgresql", "nginx"] + list(request.get("packages", []))
    libc = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
    # Each asks a program of its own: side by side, the answer waits for the slowest, not for their sum.
    candidates, nginx, ports = _in_thread(_apt_candidates, asked), _in_thread(_nginx_installed), _in_thread(_sshd_ports)
    version = _interpreter_version(python)
    return {"id": release.get("ID", ""), "version_id": release.get("VERSION_ID", ""),
            "codename": release.get("VERSION_CODENAME", ""), "name": release.get("PRETTY_NAME", ""),
            "machine": os.uname().machine, "glibc": libc[-1] if libc else "",
            "python": {"path": python, "version": version},
            "postgres": {"clusters": clusters, "installed": servers},
            "nginx": nginx(), "candidates": candidates(), "ssh_ports": ports()}


def together(request):
    """Several requests in one call, in order: the end of a command (its audit line, prune and unlock)
    costs one connection's exchange, not three. One that raises is answered with why; the rest still run
    (an unlock after a failed prune must not be lost)."""
    answers = []
    for each in request["requests"]:
        try:
            answers.append({"answer": OPS[each["op"]](each)})
        except Exception as exc:
            answers.append({"failed": "%s: %s" % (type(exc).__name__, exc)})
    return {"answers": answers}


OPS = {"status": status, "facts": facts, "apply": apply, "inspect": inspect, "lock": lock, "unlock": unlock,
       "activate": activate, "prune": prune, "audit": audit, "keystate": keystate, "setenv": setenv,
       "checkfacts": checkfacts, "hostos": hostos, "logmarkers": logmarkers, "together": together}


def main():
    request = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps(OPS[request["op"]](request)))


if __name__ == "__main__":
    main()
