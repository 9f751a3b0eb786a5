"""Postgres/Redis closed to the network and lb -> web TLS verified: the pure parts.

The lab proves the same on real hosts (tests/lab/test_network_lockdown.py).
"""

from __future__ import annotations

import dataclasses
import socket

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smship import upstreamtls
from smship.checklist import checks
from smship.checklist.firewall import CLOSED, ERROR, OPEN, Reach, from_here
from smship.errors import SmshipError
from smship.provision.provision import upstream_ca_secrets
from smship.secrets import FileBackend

from test_checklist import facts
from test_provision_plan import BOOKWORM, SECRETS, converged_facts, file_text, planned, project, state_for  # noqa: F401

CA_SECRET = {upstreamtls.CA_KEY: upstreamtls.new_key()}


@pytest.fixture
def lb_project(project):
    """The example inventory's prod with an lb in front of its two web hosts."""
    path = project / "smship.yml"
    data = yaml.safe_load(path.read_text())
    data["environments"]["prod"]["hosts"].append({"name": "lb1", "address": "203.0.113.5", "roles": ["lb"]})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return project


def lb_state(project, host_name, secrets=None):
    import test_provision_plan as plans
    saved = plans.SECRETS
    plans.SECRETS = {**SECRETS, **(secrets if secrets is not None else CA_SECRET)}
    try:
        return state_for(project, host_name)
    finally:
        plans.SECRETS = saved


def rules(state) -> str:
    return file_text(state, "/etc/smship/firewall.nft")


# ------------------------------------------------------------------ finding 5


def test_postgres_and_redis_bind_the_db_hosts_own_address_not_every_interface(project):
    state = state_for(project, "db1")
    postgres = file_text(state, "conf.d/smship.conf")
    redis = file_text(state, "/etc/redis/redis.conf")
    assert "listen_addresses = 'localhost, db1.internal.example.com'" in postgres
    assert "*" not in postgres.split("listen_addresses")[1].splitlines()[0]
    bind = next(line for line in redis.splitlines() if line.startswith("bind "))
    assert bind == "bind 127.0.0.1 -::1 db1.internal.example.com"
    # Bound before the address is up at boot: non-local binds allowed on the db host.
    assert "net.ipv4.ip_nonlocal_bind = 1" in file_text(state, "60-smship-bind.conf")


def test_the_db_hosts_firewall_admits_postgres_and_redis_from_the_app_hosts_only(project):
    text = rules(state_for(project, "db1"))
    assert "ip saddr { 203.0.113.11, 203.0.113.12, 203.0.113.21 } tcp dport { 5432, 6379 } accept" in text
    assert "dport { 80, 443 }" not in text               # no site on the db host
    assert "policy drop" in text and "reject with tcp reset" in text
    assert "ct state established,related accept" in text  # the SSH session applying it stays open


def test_every_host_admits_ssh_and_web_hosts_the_site_but_not_the_data_ports(project):
    web = rules(state_for(project, "web1"))
    assert "tcp dport { 22 } accept" in web
    assert "tcp dport { 80, 443 } accept" in web
    assert "5432" not in web and "6379" not in web
    # jobs1 is reached on port 2222: both it and 22 stay open.
    assert "tcp dport { 22, 2222 } accept" in rules(state_for(project, "jobs1"))


def test_the_ports_sshd_listens_on_stay_open_though_the_inventory_names_none(project):
    # Reached through an SSH config's Port alone: the host's own sshd says where it listens.
    listening = dataclasses.replace(BOOKWORM, ssh_ports=(22, 2200))
    assert "tcp dport { 22, 2200 } accept" in rules(state_for(project, "web1", listening))
    assert "tcp dport { 22, 2200, 2222 } accept" in rules(state_for(project, "jobs1", dataclasses.replace(
        BOOKWORM, ssh_ports=(2200,))))


def test_the_agent_reads_sshds_ports_from_its_effective_configuration(monkeypatch):
    from smship.remote import agent

    said = "port 2200\nport 22\naddressfamily any\nlistenaddress [::]:2200\npermitrootlogin no\n"
    monkeypatch.setattr(agent, "_run", lambda argv, *a: (0, said, "") if argv[-1] == "-T" else (1, "", ""))
    assert agent._sshd_ports() == [22, 2200]
    monkeypatch.setattr(agent, "_run", lambda argv, *a: (255, "", "sshd: no hostkeys available"))
    assert agent._sshd_ports() == []


def test_the_firewall_replaces_its_own_table_in_one_transaction_and_loads_at_boot(project):
    state = state_for(project, "web1")
    text = rules(state)
    assert text.index("table inet smship\ndelete table inet smship\n") < text.index("table inet smship {")
    unit = file_text(state, "/etc/systemd/system/smship-firewall.service")
    assert "ExecStart=/usr/sbin/nft -f /etc/smship/firewall.nft" in unit and "Before=network-pre.target" in unit
    assert state.handlers["load firewall"][0] == ("nft", "-c", "-f", "/etc/smship/firewall.nft")
    assert "nftables" in state.packages


def test_a_second_provision_changes_nothing_on_the_firewall(project):
    state = state_for(project, "db1")
    assert planned(state, converged_facts(state)).empty


def test_ipv6_app_hosts_get_an_ip6_rule(project):
    path = project / "smship.yml"
    data = yaml.safe_load(path.read_text())
    data["environments"]["prod"]["hosts"][0]["address"] = "2001:db8::11"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    text = rules(state_for(project, "db1"))
    assert "ip6 saddr { 2001:db8::11 } tcp dport { 5432, 6379 } accept" in text
    assert "2001:db8::11" not in text.split("ip6 saddr")[0]


def test_firewall_off_removes_smships_table_and_unit(project):
    path = project / "smship.yml"
    data = yaml.safe_load(path.read_text())
    data["environments"]["prod"]["firewall"] = {"enabled": False}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    state = state_for(project, "db1")
    assert not any(f.path == "/etc/smship/firewall.nft" for f in state.files)
    assert [e.name for e in state.ensures if "firewall" in e.name] == ["no smship firewall (firewall.enabled is false)"]


def test_allow_tcp_opens_more_ports_and_refuses_out_of_range_ones(project):
    path = project / "smship.yml"
    data = yaml.safe_load(path.read_text())
    data["environments"]["prod"]["firewall"] = {"allow_tcp": [9100]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert "tcp dport { 9100 } accept" in rules(state_for(project, "web1"))
    data["environments"]["prod"]["firewall"] = {"allow_tcp": [70000]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    from smship.inventory import InventoryError, load
    with pytest.raises(InventoryError, match=r"firewall\.allow_tcp.*port 70000 is out of range"):
        load(path)


def test_check_fails_when_a_stranger_connects_to_postgres():
    made = facts(reach=[Reach("this machine", "db1:5432", OPEN), Reach("this machine", "db1:6379", CLOSED, "refused")])
    status, reason, fix = checks.firewall(made)
    assert status == "fail"
    assert reason == "db1:5432 accepts a connection from this machine, which is not an app host"
    assert "smship provision prod" in fix


def test_check_passes_when_every_stranger_is_refused_and_warns_when_it_could_not_ask():
    closed = [Reach("this machine", "db1:5432", CLOSED, "refused"), Reach("lb1", "db1:6379", CLOSED, "refused")]
    assert checks.firewall(facts(reach=closed))[:2] == ("pass", "db1:5432, db1:6379 refuse this machine, lb1 (not app hosts)")
    status, reason, _ = checks.firewall(facts(reach=closed + [Reach("lb1", "db1:5432", ERROR, "exit 1")]))
    assert (status, reason) == ("warn", "lb1 could not try db1:5432: exit 1")


def test_from_here_tells_an_open_port_from_a_refused_one():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert from_here("127.0.0.1", port)[0] == OPEN
    assert from_here("127.0.0.1", port)[0] == CLOSED


def test_the_probe_a_host_runs_answers_one_line_per_port_in_order():
    import subprocess
    from smship.checklist.firewall import _REMOTE
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = str(server.getsockname()[1])
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            closed = str(unused.getsockname()[1])
        out = subprocess.run(["sh", "-c", _REMOTE, "smship", "2", "127.0.0.1", closed, "127.0.0.1", port],
                             capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["closed Connection refused", "open"]


def test_check_warns_when_there_is_no_stranger_to_try_from():
    status, reason, _ = checks.firewall(facts(reach=[]))
    assert status == "warn" and "this machine is an app host" in reason


# ------------------------------------------------------------------ finding 7


def test_the_lb_verifies_its_web_hosts_against_the_environments_ca(lb_project):
    state = lb_state(lb_project, "lb1")
    conf = file_text(state, "-lb.conf")
    assert "proxy_ssl_verify on;" in conf
    assert "proxy_ssl_trusted_certificate /etc/ssl/smship/shop-upstream-ca.crt;" in conf
    assert "proxy_ssl_name upstream.shop.smship.internal;" in conf
    ca = x509.load_pem_x509_certificate(file_text(state, "-upstream-ca.crt").encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_each_web_host_presents_a_certificate_the_ca_signed_for_the_name_the_lb_asks(lb_project):
    ca = x509.load_pem_x509_certificate(file_text(lb_state(lb_project, "lb1"), "-upstream-ca.crt").encode())
    web1, web2 = lb_state(lb_project, "web1"), lb_state(lb_project, "web2")
    for state in (web1, web2):
        cert = x509.load_pem_x509_certificate(file_text(state, "-upstream.crt").encode())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert names == ["upstream.shop.smship.internal"]
        key = next(f for f in state.files if f.path.endswith("-upstream.key"))
        assert key.secret and key.mode == "0600"
        assert "server_name upstream.shop.smship.internal;" in file_text(state, "sites-available/shop.conf")
    assert file_text(web1, "-upstream.key") != file_text(web2, "-upstream.key")


def test_a_certificate_from_another_ca_does_not_verify(lb_project):
    ca = x509.load_pem_x509_certificate(file_text(lb_state(lb_project, "lb1"), "-upstream-ca.crt").encode())
    other = lb_state(lb_project, "web1", {upstreamtls.CA_KEY: upstreamtls.new_key()})
    stranger = x509.load_pem_x509_certificate(file_text(other, "-upstream.crt").encode())
    with pytest.raises(Exception):
        stranger.verify_directly_issued_by(ca)


def test_upstream_material_is_the_same_bytes_on_every_run_so_provision_converges(lb_project):
    first, second = lb_state(lb_project, "web1"), lb_state(lb_project, "web1")
    assert [f.content for f in first.files] == [f.content for f in second.files]
    lb = lb_state(lb_project, "lb1")
    assert planned(lb, converged_facts(lb)).empty


def test_the_lb_trusts_the_previous_ca_too_while_a_rotation_rolls_out(lb_project):
    previous = upstreamtls.new_key()
    state = lb_state(lb_project, "lb1", {**CA_SECRET, upstreamtls.PREVIOUS: previous})
    assert file_text(state, "-upstream-ca.crt").count("BEGIN CERTIFICATE") == 2


def test_a_malformed_ca_key_is_named_and_never_shown(lb_project):
    with pytest.raises(SmshipError, match="SMSHIP_UPSTREAM_CA_KEY in the secrets backend is not 32 bytes") as caught:
        lb_state(lb_project, "lb1", {upstreamtls.CA_KEY: "not-a-key-at-all"})
    assert "not-a-key-at-all" not in str(caught.value)


def test_the_ca_key_is_made_once_in_a_file_backend_and_never_by_check(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text("SM_SECRET_KEY=x\n")
    path.chmod(0o600)
    env = type("Env", (), {"hosts_with": lambda self, role: ["lb1"] if role == "lb" else [],
                           "secrets": type("S", (), {"backend": "file", "path": path})()})()
    app = type("App", (), {"settings": type("N", (), {"backend_names": lambda self: ()})()})()
    ctx = type("Ctx", (), {"env": env, "app": app})()
    planned = upstream_ca_secrets(ctx, {"SM_SECRET_KEY": "x"}, check=True)
    assert upstreamtls.CA_KEY in planned and upstreamtls.CA_KEY not in path.read_text()
    made = upstream_ca_secrets(ctx, {"SM_SECRET_KEY": "x"}, check=False)
    assert FileBackend(path).read()[upstreamtls.CA_KEY] == made[upstreamtls.CA_KEY]
    assert len(upstreamtls.seed_of(made[upstreamtls.CA_KEY])) == 32
    assert upstream_ca_secrets(ctx, made, check=False) == made


def test_an_ed25519_seed_is_what_the_key_holds():
    seed = upstreamtls.seed_of(upstreamtls.new_key())
    Ed25519PrivateKey.from_private_bytes(seed)
