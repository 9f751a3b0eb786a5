"""The agent's web-slot helpers on real sockets: which slot serves, the units a request means, the gate's
request over a slot's own socket, and the wait for a slot nginx no longer reaches to take what reached it.

systemctl is not needed here; starting and stopping slots is the lab's (tests/lab/test_deploy.py).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from netkit import UnixServer
from smship.layout import Layout
from smship.remote import agent, client

LAYOUT = Layout(app="shop", user="shop", root="/srv/shop")


def slots_in(tmp_path) -> dict:
    """Layout.web_slots with its paths moved under ``tmp_path``."""
    web = LAYOUT.web_slots()
    return web | {"upstream": str(tmp_path / "uvicorn.sock"), "socket": str(tmp_path / "%s.sock"),
                  "release": str(tmp_path / "slot-%s")}


def test_the_serving_slot_is_the_one_nginx_s_link_names(tmp_path):
    web = slots_in(tmp_path)
    assert agent._serving_slot(web) is None          # before the first deploy
    (tmp_path / "uvicorn.sock").symlink_to(tmp_path / "b.sock")
    assert agent._serving_slot(web) == "b"
    (tmp_path / "uvicorn.sock").unlink()
    (tmp_path / "uvicorn.sock").symlink_to("/run/elsewhere.sock")
    assert agent._serving_slot(web) is None          # a link smship did not write names no slot


def test_the_web_template_names_in_a_request_stand_for_the_serving_slot(tmp_path):
    web = slots_in(tmp_path)
    units = [LAYOUT.web_socket, LAYOUT.web_service, LAYOUT.worker_service]
    assert agent._units({"units": units, "web": web}) == ["shop-web@a.socket", "shop-web@a.service",
                                                          "shop-worker@.service"]
    (tmp_path / "uvicorn.sock").symlink_to(tmp_path / "b.sock")
    assert agent._units({"units": units, "web": web})[:2] == ["shop-web@b.socket", "shop-web@b.service"]
    assert agent._units({"units": [LAYOUT.worker_service]}) == ["shop-worker@.service"]


def test_a_host_still_running_the_pre_slot_web_unit_is_refused_by_name(tmp_path, monkeypatch):
    assert LAYOUT.web_slots()["legacy"] == ["shop-web.service", "shop-web.socket"]
    web = slots_in(tmp_path) | {"legacy": ["smship-test-no-such-unit.service"]}
    assert agent._web_refusal(web) is None


class SlotServer(UnixServer):
    """A slot's uvicorn: answers every request ``status`` (healthy, and alive on /health/live, by default)
    and records each request's head."""

    def __init__(self, path, status: str = "healthy"):
        self.heads: list[bytes] = []
        self.status = status
        super().__init__(path, self._answer)

    def _answer(self, conn):
        self.heads.append(conn.recv(65536))
        said = "alive" if self.status == "healthy" and self.heads[-1].startswith(b"GET /health/live ") else self.status
        body = b'{"status": "%s"}' % said.encode()
        code = b"200 OK" if self.status == "healthy" else b"503 Service Unavailable"
        conn.sendall(b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n%s" % (code, len(body), body))


def test_the_gate_asks_the_slot_s_own_socket_as_nginx_would(tmp_path):
    server = SlotServer(tmp_path / "a.sock")
    try:
        status, body = agent._get({"socket": str(tmp_path / "a.sock"), "host": "shop.example.com"}, "/health/ready")
        assert (status, body) == (200, b'{"status": "healthy"}')
        head = server.heads[0].decode()
        assert head.startswith("GET /health/ready HTTP/1.1\r\n")
        for line in ("Host: shop.example.com", "X-Forwarded-Proto: https", "X-Forwarded-For: 127.0.0.1"):
            assert line in head.splitlines(), head
    finally:
        server.close()


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed (scripts/setup-deps installs it)")
def test_the_old_slot_is_stopped_only_once_it_accepted_every_queued_connection(tmp_path):
    path = tmp_path / "a.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    queued = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
    try:
        for client in queued:
            client.connect(str(path))       # in the backlog: nobody accepted them yet
        accepted = []

        def accept_later():
            time.sleep(0.3)
            for _ in queued:
                accepted.append(listener.accept()[0])

        accepting = threading.Thread(target=accept_later, daemon=True)
        began = time.monotonic()        # before the thread's 0.3 s sleep begins
        accepting.start()
        agent._await_backlog(str(path))
        assert time.monotonic() - began >= 0.3       # it waited for the accepts
        accepting.join(5)
        assert len(accepted) == 3
        began = time.monotonic()
        agent._await_backlog(str(path))      # nothing queued: no wait
        assert time.monotonic() - began < 0.5
        agent._await_backlog(str(tmp_path / "gone.sock"))   # no such socket: nothing to wait for
    finally:
        for conn in queued:
            conn.close()
        listener.close()


class Systemd:
    """systemctl as the agent calls it for the web slots: a started slot's uvicorn is a SlotServer on
    its socket (answering ``status``); journalctl and ss find nothing."""

    def __init__(self, web: dict, status: str):
        self.web, self.status = web, status
        self.servers: dict[str, SlotServer] = {}
        self.calls: list[list[str]] = []

    def slot(self, unit: str) -> str | None:
        return next((s for s in "ab" if unit in (self.web["service"] % s, self.web["socket_unit"] % s)), None)

    def start(self, slot: str, status: str) -> None:
        self.servers[slot] = SlotServer(self.web["socket"] % slot, status)

    def stop(self, slot: str) -> None:
        server = self.servers.pop(slot, None)
        if server:
            server.close()
            Path(self.web["socket"] % slot).unlink()

    def run(self, argv, stdin=None):
        if argv[0] != "systemctl":
            return 0, "", ""
        self.calls.append(list(argv))
        verb, units = argv[1], [a for a in argv[2:] if not a.startswith("-")]
        if verb == "restart":
            self.stop(self.slot(units[0]))
            self.start(self.slot(units[0]), self.status)
        elif verb == "stop":
            self.stop(self.slot(units[0]))
        elif verb == "is-active":
            return 0, "active\n" if self.slot(units[0]) in self.servers else "inactive\n", ""
        elif verb == "show":
            return 0, "0\n" if "--value" in argv else "NRestarts=0\nInvocationID=x\n", ""
        return 0, "", ""

    def close(self):
        for slot in list(self.servers):
            self.stop(slot)


@pytest.fixture
def serving_a(tmp_path, monkeypatch):
    """A host whose slot a serves release r1 (nginx's link names a.sock), under a fake systemd."""
    web = slots_in(tmp_path)
    release = tmp_path / "srv" / "releases" / "r1"
    release.mkdir(parents=True)
    (release / agent.COMPLETE_MARKER).write_text("")
    (tmp_path / "srv" / "current").symlink_to(release)
    (tmp_path / "uvicorn.sock").symlink_to(web["socket"] % "a")
    systemd = Systemd(web, "healthy")
    systemd.start("a", "healthy")
    monkeypatch.setattr(agent, "_run", systemd.run)
    monkeypatch.setattr(agent, "PENDING_HANDLERS", str(tmp_path / "pending-handlers.json"))
    yield web, systemd
    systemd.close()


def slot_restart(tmp_path, web, timeout=1.5) -> dict:
    health = {"unit": LAYOUT.web_service, "port": 443, "host": "shop.example.com", "timeout": timeout,
              "live": {"path": "/health/live", "expect": "status"},
              "ready": {"path": "/health/ready", "expect": "status"}}
    return client.web_slot_restart(str(tmp_path / "srv"), web, health, "handler restart app units")


def test_a_handler_s_restart_starts_the_idle_slot_on_the_live_release_and_switches_once_healthy(tmp_path, serving_a):
    web, systemd = serving_a
    old = systemd.servers["a"]
    answer = agent.apply({"actions": [slot_restart(tmp_path, web)], "handlers": ["restart app units"]})
    assert answer == {"ok": True, "done": ["handler restart app units"]}
    assert agent._serving_slot(web) == "b"
    assert (tmp_path / "slot-b").resolve() == tmp_path / "srv" / "releases" / "r1"
    assert (tmp_path / "srv" / "current").resolve() == tmp_path / "srv" / "releases" / "r1"
    assert systemd.servers["b"].heads, "the new slot was gated on its own socket"
    assert "a" not in systemd.servers and old.heads == []      # stopped, never asked
    assert not (tmp_path / "pending-handlers.json").exists()


def test_a_new_slot_failing_its_gate_fails_the_apply_and_the_old_one_keeps_serving(tmp_path, serving_a):
    web, systemd = serving_a
    systemd.status = "starting"
    old = systemd.servers["a"]
    answer = agent.apply({"actions": [slot_restart(tmp_path, web)], "handlers": ["restart app units"]})
    assert answer["ok"] is False and answer["failed"] == "handler restart app units"
    assert "the new web process (slot b, release r1) failed its gate and was stopped" in answer["error"]
    assert "the old process (slot a) kept serving" in answer["error"]
    assert agent._serving_slot(web) == "a" and systemd.servers == {"a": old}
    assert ["systemctl", "stop", web["service"] % "a", web["socket_unit"] % "a"] not in systemd.calls
    # Still owed: the next provision tries again.
    assert agent._pending_handlers() == ["restart app units"]


def test_a_handler_s_restart_starts_no_web_slot_where_none_serves(tmp_path, serving_a):
    web, systemd = serving_a
    systemd.stop("a")               # stopped by hand: try-restart would leave it so
    assert agent.apply({"actions": [slot_restart(tmp_path, web)]})["ok"]
    (tmp_path / "uvicorn.sock").unlink()    # never deployed
    assert agent.apply({"actions": [slot_restart(tmp_path, web)]})["ok"]
    assert systemd.servers == {} and not any(call[1] in ("restart", "start") for call in systemd.calls)


def deploy_r2(tmp_path, web) -> dict:
    """The agent's answer to a deploy's activation of release r2 through the slots."""
    release = tmp_path / "srv" / "releases" / "r2"
    release.mkdir()
    (release / agent.COMPLETE_MARKER).write_text("")
    health = {"port": 443, "host": "shop.example.com", "timeout": 1.5,
              "live": {"path": "/health/live", "expect": "status"},
              "ready": {"path": "/health/ready", "expect": "status"}}
    request = client.activate(str(tmp_path / "srv"), "r2", [LAYOUT.web_service], health, None, web=web)
    return agent.activate(request.body())


def enabled(calls) -> set[str]:
    """The units that start at boot after ``calls``' enables and disables."""
    units: set[str] = set()
    for call in calls:
        if call[1] in ("enable", "disable"):
            named = {a for a in call[2:] if not a.startswith("--")}
            units = units | named if call[1] == "enable" else units - named
    return units


def test_a_deploy_s_switch_has_systemd_reload_the_boot_links_while_the_new_slot_starts(tmp_path, serving_a,
                                                                                       monkeypatch):
    web, systemd = serving_a
    monkeypatch.setattr(agent, "_start", lambda argv: systemd.calls.append(list(argv)) or (lambda: (0, "", "")))
    answer = deploy_r2(tmp_path, web)
    assert answer["ok"] and "reload_error" not in answer, answer
    boot = [call[1:] for call in systemd.calls if call[1] in ("enable", "disable", "daemon-reload", "stop")]
    assert boot == [["enable", "--quiet", "--no-reload", web["service"] % "b"],
                    ["disable", "--quiet", "--no-reload", web["service"] % "a"],
                    ["daemon-reload"],
                    ["stop", "--no-block", web["service"] % "a", web["socket_unit"] % "a"]]
    restart = systemd.calls.index(["systemctl", "restart", web["service"] % "b"])
    gate = next(i for i, call in enumerate(systemd.calls) if i > restart and call[1] == "is-active")
    assert restart < systemd.calls.index(["systemctl", "daemon-reload"]) < gate


def test_a_deploy_s_new_slot_failing_its_gate_leaves_the_old_slot_the_one_that_starts_at_boot(tmp_path, serving_a,
                                                                                              monkeypatch):
    web, systemd = serving_a
    monkeypatch.setattr(agent, "_start", lambda argv: systemd.calls.append(list(argv)) or (lambda: (0, "", "")))
    systemd.calls.append(["systemctl", "enable", web["service"] % "a"])    # as the slot serving before was
    systemd.status = "starting"
    answer = deploy_r2(tmp_path, web)
    assert answer["ok"] is False and answer["kept"] is True
    assert ["systemctl", "enable", "--quiet", "--no-reload", web["service"] % "b"] in systemd.calls
    assert enabled(systemd.calls) == {web["service"] % "a"}
    assert systemd.calls.count(["systemctl", "daemon-reload"]) == 2


def test_a_reload_that_fails_is_said_and_the_switch_stands(tmp_path, serving_a, monkeypatch):
    web, systemd = serving_a
    monkeypatch.setattr(agent, "_start", lambda argv: lambda: (1, "", "Failed to reload daemon: Access denied\n"))
    answer = deploy_r2(tmp_path, web)
    assert answer["ok"] and agent._serving_slot(web) == "b"
    assert answer["reload_error"] == "systemctl daemon-reload: Failed to reload daemon: Access denied"
    assert client._activation("web1", answer).reload_error == answer["reload_error"]


def test_the_units_of_a_host_with_worker_and_beat_restart_in_one_call_side_by_side(monkeypatch):
    calls = []

    def run(argv, stdin=None):
        calls.append(argv)
        return 0, "NRestarts=0\nInvocationID=i-%s\n" % argv[-3] if argv[1] == "show" else "", ""

    watched = {}
    monkeypatch.setattr(agent, "_switch", lambda root, release: None)
    monkeypatch.setattr(agent, "_run", run)
    monkeypatch.setattr(agent, "_watch_units", lambda units, settle, ready, restarts, invocations, since:
                        watched.update(invocations) or {"ok": True})
    units = [LAYOUT.worker_service, LAYOUT.beat_service]
    assert agent._start_and_check({"root": "/srv/shop", "restart": units}, "r2") == {"ok": True}
    assert [call for call in calls if call[1] == "restart"] == [["systemctl", "restart", *units]]
    # Each unit's new run is told apart, for the journal lines it logs once it works.
    assert watched == {unit: "i-" + unit for unit in units}
