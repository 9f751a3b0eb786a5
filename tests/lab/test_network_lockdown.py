"""Postgres and Redis closed to the network, lb -> web TLS verified: on the session's lab.

lab1 runs db, lb and beat (an app host: beat); lab2 and lab3 run web and
worker. The machine running the tests sits on the lab bridge (the gateway
address) and is not an app host: that is the stranger.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from labkit import ENV, WEB, remote

pytestmark = pytest.mark.lab

DB = "lab1"
PORTS = (5432, 6379)
HOST_HEADER = "-H 'Host: refapp.lab.test'"
UPSTREAM_CERT = "/etc/ssl/smship/refapp-upstream.crt"
UPSTREAM_KEY = "/etc/ssl/smship/refapp-upstream.key"


def connect_from_here(address: str, port: int) -> str:
    try:
        socket.create_connection((address, port), timeout=5).close()
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error: {exc}"
    return "open"


def connect_from(lab, host: str, address: str, port: int) -> str:
    return remote(lab, host, "python3 -c 'import socket, sys\n"
                             "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5).close(); print(\"open\")\n"
                             "except OSError as exc:\n    print(\"closed\", exc)' " f"{address} {port}").strip()


def ready_through_lb(lab) -> str:
    return json.loads(remote(lab, DB, f"curl -sk {HOST_HEADER} https://127.0.0.1/health/ready"))["status"]


def lb_status(lab) -> str:
    return remote(lab, DB, f"curl -sk -o /dev/null -w '%{{http_code}}' {HOST_HEADER} https://127.0.0.1/version")


def lb_serves_again(lab, timeout: float = 30) -> None:
    """The lb took the web hosts out for failing; it tries them again after fail_timeout (5 s)."""
    deadline = time.monotonic() + timeout
    while lb_status(lab) != "200":
        assert time.monotonic() < deadline, "the lb does not serve again after the web hosts were repaired"
        time.sleep(1)


def test_postgres_and_redis_refuse_a_lab_address_that_is_not_an_app_host_while_the_app_works(lab, deployed):
    db = lab.address(DB)
    for port in PORTS:
        assert connect_from_here(db, port) == "refused", port
        # An app host gets through: the refusal is the firewall's choice, not a dead service.
        assert connect_from(lab, WEB[0], db, port) == "open", port
    # Bound to the host's own address and loopback, never every interface.
    listening = remote(lab, DB, "ss -Hltn '( sport = :5432 or sport = :6379 )' | awk '{print $4}'").split()
    assert listening and all(a.rsplit(":", 1)[0] in ("127.0.0.1", "[::1]", db) for a in listening), listening
    assert ready_through_lb(lab) == "healthy"


def test_smship_check_verifies_the_firewall_from_outside_and_provision_repairs_it(lab, deployed, smship):
    def verdict() -> dict:
        run = smship("check", ENV, "--skip-check", "migrations,admin,connection-budget,sm010", "-o", "json")
        return next(v for v in run.document["checks"] if v["name"] == "firewall")

    assert verdict()["status"] == "pass"
    remote(lab, DB, "nft delete table inet smship")
    try:
        broken = verdict()
        assert broken["status"] == "fail", broken
        assert f"{DB}:5432 accepts a connection from this machine" in broken["reason"]
    finally:
        run = smship("provision", ENV, "--limit", DB, "-o", "json", check=True)
    assert "firewall table inet smship loaded: apply" in json.dumps(run.document["hosts"]), run
    assert connect_from_here(lab.address(DB), 5432) == "refused"
    assert verdict()["status"] == "pass"


def test_a_port_sshd_listens_on_is_admitted_though_the_inventory_names_none(lab, deployed, smship):
    """An operator reaching a host through ``Port`` in an SSH config alone must not be locked out."""
    host, extra = WEB[1], 2200
    drop_in = "/etc/ssh/sshd_config.d/20-test-extra-port.conf"
    remote(lab, host, f"printf 'Port 22\\nPort {extra}\\n' > {drop_in} && systemctl reload ssh")
    try:
        assert connect_from_here(lab.address(host), extra) != "open"      # the firewall drops it yet
        smship("provision", ENV, "--limit", host, "-o", "json", check=True)
        assert connect_from_here(lab.address(host), extra) == "open"
        assert "tcp dport { 22, 2200 } accept" in remote(lab, host, "nft list table inet smship")
    finally:
        remote(lab, host, f"rm -f {drop_in} && systemctl reload ssh")
        smship("provision", ENV, "--limit", host, check=True)
    assert "2200" not in remote(lab, host, "nft list table inet smship")


def test_the_lb_refuses_web_hosts_whose_certificate_the_environments_ca_did_not_sign(lab, deployed, smship):
    def impostor(host: str) -> None:
        # Same name, same paths: only the signer differs. A restart drops the
        # TLS sessions the lb could otherwise resume without a new handshake.
        remote(lab, host, f"openssl req -x509 -newkey ed25519 -nodes -days 30 -subj /CN=upstream.refapp.smship.internal "
                          f"-addext subjectAltName=DNS:upstream.refapp.smship.internal -keyout {UPSTREAM_KEY} "
                          f"-out {UPSTREAM_CERT} 2>/dev/null && systemctl restart nginx")

    assert lb_status(lab) == "200"
    try:
        impostor(WEB[0])
        # The lb sends everything to the web host it can verify.
        assert {lb_status(lab) for _ in range(6)} == {"200"}
        assert "upstream SSL certificate verify error" in remote(lab, DB, "tail -n 50 /var/log/nginx/error.log")
        impostor(WEB[1])
        assert lb_status(lab) == "502"
    finally:
        smship("provision", ENV, "--limit", "web", "-o", "json", check=True)
    lb_serves_again(lab)
    assert {lb_status(lab) for _ in range(4)} == {"200"}
    assert ready_through_lb(lab) == "healthy"
