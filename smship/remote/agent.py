"""The program smship runs on a host to read its state and apply changes.

It is sent as ``python3 -c SOURCE`` and reads one JSON request on stdin, so
a host needs nothing installed beyond Debian's python3, file contents and
secrets never appear on a command line, and a whole provisioning step costs
one SSH round trip.  Standard library only: it runs on the host's Python.

Requests:
  {"op": "facts", "packages": [...], "users": [...], "paths": {path: sha256|null},
   "services": [...], "checks": {name: {"argv": [...], "output": str|null}}}
  {"op": "apply", "actions": [...]}  (see ``apply`` below)
The answer is one JSON document on stdout.
"""

import base64
import grp
import hashlib
import json
import os
import pwd
import stat
import subprocess
import sys
import tempfile


def _run(argv, stdin=None):
    proc = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")


def _package_installed(names):
    if not names:
        return {}
    code, out, _ = _run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Abbrev}\n"] + list(names))
    installed = {line.split()[0]: line.split()[1].startswith("ii") for line in out.splitlines() if len(line.split()) > 1}
    return {name: installed.get(name, False) for name in names}


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


def _service_fact(name):
    _, enabled, _ = _run(["systemctl", "is-enabled", name])
    _, active, _ = _run(["systemctl", "is-active", name])
    return {"enabled": enabled.strip(), "active": active.strip()}


def facts(request):
    users = {}
    for name in request.get("users", []):
        try:
            entry = pwd.getpwnam(name)
            users[name] = {"uid": entry.pw_uid, "home": entry.pw_dir}
        except KeyError:
            users[name] = None
    checks = {}
    for name, check in request.get("checks", {}).items():
        code, out, _ = _run(check["argv"])
        wanted = check.get("output")
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
    return {
        "os": release,
        "packages": _package_installed(request.get("packages", [])),
        "users": users,
        "paths": {path: _path_fact(path, sha) for path, sha in request.get("paths", {}).items()},
        "services": {name: _service_fact(name) for name in request.get("services", [])},
        "checks": checks,
    }


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


APPLY = {"file": _write_file, "link": _link, "directory": _directory, "absent": _absent, "command": _command}


def apply(request):
    """Apply actions in order; stop at the first failure and say which."""
    done = []
    for action in request["actions"]:
        try:
            APPLY[action["kind"]](action)
        except Exception as exc:  # reported to smship, which fails the host
            return {"ok": False, "done": done, "failed": action.get("label") or action.get("path"), "error": str(exc)}
        done.append(action.get("label") or action.get("path"))
    return {"ok": True, "done": done}


def main():
    request = json.loads(sys.stdin.read())
    answer = facts(request) if request["op"] == "facts" else apply(request)
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
