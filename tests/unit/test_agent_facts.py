"""The agent's facts round trip on this machine: its read-only programs run side by side, each answer read
as its own."""

from __future__ import annotations

from smship.remote import agent


def test_facts_runs_its_checks_at_once_and_reads_each_answer_as_its_own(tmp_path):
    import base64
    import time

    checks = {"slow": {"argv": ["sh", "-c", "sleep 0.4; echo slow"], "output": "slow"},
              "also slow": {"argv": ["sh", "-c", "sleep 0.4; exit 1"], "output": None},
              "reads stdin": {"argv": ["cat"], "stdin": base64.b64encode(b"given\n").decode(), "output": "given"},
              "says otherwise": {"argv": ["echo", "no"], "output": "yes"}}
    began = time.monotonic()
    answer = agent.facts({"checks": checks, "paths": {str(tmp_path): None}})
    assert time.monotonic() - began < 0.75          # the two slow ones side by side, not one after the other
    assert answer["checks"] == {"slow": True, "also slow": False, "reads stdin": True, "says otherwise": False}
    assert answer["paths"][str(tmp_path)]["type"] == "dir"


def test_the_agents_own_interpreter_is_not_started_again_to_tell_its_version(monkeypatch):
    import sys

    started = []
    real_run = agent._run
    monkeypatch.setattr(agent, "_run", lambda argv, stdin=None: started.append(argv) or real_run(argv, stdin))
    assert agent._interpreter_version(sys.executable) == "%d.%d.%d" % sys.version_info[:3]
    assert started == []
    assert agent._interpreter_version("/no/such/python") is None
    assert started == [["/no/such/python", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]]


def _alone(argv):
    return agent._run(argv)[0] == 0


def test_checks_that_only_answer_by_their_status_share_one_shell_and_answer_as_they_would_alone(monkeypatch, tmp_path):
    present = tmp_path / "it's here"
    present.write_text("x")
    checks = {
        "script with args": ["sh", "-c", 'test -e "$1" && test "$2" = "a b\'c\\$d"', "sh", str(present), "a b'c$d"],
        "script that fails": ["sh", "-c", 'test -e "$1"', "sh", str(tmp_path / "absent")],
        "exit ends only its own check": ["sh", "-c", "exit 0; exit 1"],
        "exit status 3": ["sh", "-c", "exit 3"],
        "no args": ["sh", "-c", 'test "$#" = 0'],
        "a builtin by its program's name": ["test", "-s", str(present)],
        "a program": ["grep", "-q", "x", str(present)],
        "no such program": ["/no/such/program"],
        "reads stdin and meets its end": ["sh", "-c", "read -r line"],
        "sets nothing for the next": ["sh", "-c", "cd /; x=1; set -e; false"],
        "after it": ["sh", "-c", 'test "$(pwd)" != / || test -z "$x"'],
    }
    started = []
    real_start = agent._start
    monkeypatch.setattr(agent, "_start", lambda argv, stdin=None: started.append(argv) or real_start(argv, stdin))
    answer = agent.facts({"checks": {name: {"argv": argv, "output": None} for name, argv in checks.items()}, "paths": {}})
    assert len(started) == 1 and started[0][:2] == ["sh", "-c"]
    assert answer["checks"] == {"script with args": True, "script that fails": False,
                                "exit ends only its own check": True, "exit status 3": False, "no args": True,
                                "a builtin by its program's name": True, "a program": True, "no such program": False,
                                "reads stdin and meets its end": False, "sets nothing for the next": False,
                                "after it": True}
    assert {name: ok for name, ok in answer["checks"].items() if name != "no such program"} == \
        {name: _alone(argv) for name, argv in checks.items() if name != "no such program"}


def test_checks_a_dead_shared_shell_did_not_answer_run_alone():
    checks = {"first": ["true"], "kills the shared shell": ["sh", "-c", "kill -9 $$"], "last": ["sh", "-c", "exit 0"]}
    answer = agent.facts({"checks": {name: {"argv": argv} for name, argv in checks.items()}, "paths": {}})
    # Alone, the killer kills only itself.
    assert answer["checks"] == {"first": True, "kills the shared shell": False, "last": True}


def _fake_systemctl(tmp_path, monkeypatch, show_status=0):
    log = tmp_path / "calls"
    program = tmp_path / "bin" / "systemctl"
    program.parent.mkdir()
    program.write_text(f"""#!/bin/sh
echo "$*" >> {log}
case "$1" in
show)
  [ {show_status} = 0 ] || exit {show_status}
  shift; first=1
  for unit in "$@"; do
    case "$unit" in -p) break;; --*) continue;; esac
    [ $first = 1 ] || echo; first=0
    case "$unit" in
      web) printf 'ActiveState=active\\nUnitFileState=enabled\\n';;
      old) printf 'ActiveState=failed\\nUnitFileState=generated\\n';;
      *) printf 'ActiveState=inactive\\nUnitFileState=\\n';;
    esac
  done;;
is-enabled) case "$2" in web|old) echo enabled;; *) echo disabled;; esac;;
is-active) case "$2" in web) echo active;; *) echo inactive;; esac;;
esac
""")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{program.parent}:{agent.os.environ['PATH']}")
    return log


def test_services_are_read_in_one_systemctl_call(tmp_path, monkeypatch):
    log = _fake_systemctl(tmp_path, monkeypatch)
    answer = agent.facts({"services": ["web", "gone", "old"], "paths": {}})
    assert answer["services"] == {"web": {"enabled": "enabled", "active": "active"},
                                  "gone": {"enabled": "", "active": "inactive"},
                                  # A SysV script's unit: is-enabled asks its links.
                                  "old": {"enabled": "enabled", "active": "failed"}}
    assert log.read_text().splitlines() == [
        "show --timestamp=unix web gone old -p UnitFileState,ActiveState", "is-enabled old"]


def test_services_are_asked_one_by_one_when_systemctl_show_fails(tmp_path, monkeypatch):
    log = _fake_systemctl(tmp_path, monkeypatch, show_status=1)
    answer = agent.facts({"services": ["web", "gone"], "paths": {}})
    assert answer["services"] == {"web": {"enabled": "enabled", "active": "active"},
                                  "gone": {"enabled": "disabled", "active": "inactive"}}
    assert log.read_text().splitlines()[1:] == ["is-enabled web", "is-active web", "is-enabled gone", "is-active gone"]
