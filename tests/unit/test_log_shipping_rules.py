"""Log shipping's pure parts: the logs section, the roles each host gets, the certificates,
the collector's firewall rule, where the collector keeps a host's lines, and the check's verdicts.

The lab proves the same on real hosts (tests/lab/test_log_shipping.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID

from smship import logship, upstreamtls
from smship.checklist import checks
from smship.errors import SmshipError
from smship.inventory import load
from smship.inventory.loading import InventoryError
from smship.remote.client import LogMarker

from test_checklist import facts
from test_provision_plan import SECRETS, file_text, project, state_for  # noqa: F401


def with_logs(project, logs) -> None:
    path = project / "smship.yml"
    data = yaml.safe_load(path.read_text())
    data["environments"]["prod"]["logs"] = logs
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def shipping(project):
    with_logs(project, {"collector": "db1"})
    return project


def load_error(project) -> str:
    with pytest.raises(InventoryError) as caught:
        load(project / "smship.yml")
    return str(caught.value)


def test_the_collector_must_be_a_host_of_the_environment(project):
    with_logs(project, {"collector": "logs9"})
    assert "environments.prod.logs.collector: 'logs9' is not a host of this environment (hosts: web1, web2, " \
           "jobs1, db1)" in load_error(project)


def test_the_port_is_a_port_and_not_the_collectors_ssh_port(project):
    with_logs(project, {"collector": "db1", "port": 70000})
    assert "environments.prod.logs.port: " in load_error(project)
    with_logs(project, {"collector": "db1", "port": 22})
    assert "logs.port: 22 is already taken on the collector db1" in load_error(project)
    with_logs(project, {"collector": "db1", "prot": 1})
    assert "logs.prot" in load_error(project)


def test_without_a_logs_section_no_host_ships_or_collects(project):
    assert state_for(project, "web1").roles == ["base", "firewall", "app", "web"]
    assert state_for(project, "db1").roles == ["base", "firewall", "db"]
    assert "19532" not in file_text(state_for(project, "db1"), "/etc/smship/firewall.nft")


def test_app_hosts_upload_and_the_collector_collects(shipping):
    assert state_for(shipping, "web1").roles == ["base", "firewall", "app", "web", "logship"]
    assert state_for(shipping, "db1").roles == ["base", "firewall", "db", "logs"]
    upload = file_text(state_for(shipping, "jobs1"), "journal-upload.conf.d/smship.conf")
    assert "URL=https://db1.internal.example.com:19532\n" in upload
    assert "ServerKeyFile=/run/credentials/systemd-journal-upload.service/key" in upload
    unit = file_text(state_for(shipping, "jobs1"), "systemd-journal-upload.service.d/smship.conf")
    assert "LoadCredential=key:/etc/smship/logs/upload.key" in unit and "StartLimitIntervalSec=0" in unit
    remote = file_text(state_for(shipping, "db1"), "systemd-journal-remote.service.d/smship.conf")
    assert "LogsDirectoryMode=0750" in remote


RETIRE_UPLOAD = "no journal upload of smship's (this host does not ship its logs)"
RETIRE_COLLECTOR = "no log collector of smship's (this host does not collect the fleet's logs)"


def retirements(state) -> set[str]:
    return {e.name for e in state.ensures} & {RETIRE_UPLOAD, RETIRE_COLLECTOR}


def test_what_a_host_no_longer_plays_in_log_shipping_is_undone(project, shipping):
    assert retirements(state_for(shipping, "web1")) == {RETIRE_COLLECTOR}
    assert retirements(state_for(shipping, "db1")) == {RETIRE_UPLOAD}        # the collector ships nothing
    with_logs(project, None)
    assert retirements(state_for(project, "web1")) == retirements(state_for(project, "db1")) == \
        {RETIRE_UPLOAD, RETIRE_COLLECTOR}
    undo = next(e for e in state_for(project, "web1").ensures if e.name == RETIRE_UPLOAD)
    # Keyed on smship's own drop-in: an uploader smship never set up is left alone.
    assert undo.check[-1] == "/etc/systemd/system/systemd-journal-upload.service.d/smship.conf"
    assert "disable --now systemd-journal-upload.service" in undo.apply[2] and "/etc/smship/logs" in undo.apply


def test_keys_are_root_only_secret_files(shipping):
    for host, name in (("db1", "collector.key"), ("web1", "upload.key")):
        key = next(f for f in state_for(shipping, host).files if f.path.endswith(name))
        assert key.mode == "0600" and key.secret and (key.owner or "root") == "root"


def test_only_the_app_hosts_may_reach_the_collectors_port(shipping):
    rules = file_text(state_for(shipping, "db1"), "/etc/smship/firewall.nft")
    assert "ip saddr { 203.0.113.11, 203.0.113.12, 203.0.113.21 } tcp dport 19532 accept" in rules
    assert "19532" not in file_text(state_for(shipping, "web1"), "/etc/smship/firewall.nft")


def _verify(cert_pem: str, ca_pem: str) -> x509.Certificate:
    cert, ca = x509.load_pem_x509_certificate(cert_pem.encode()), x509.load_pem_x509_certificate(ca_pem.encode())
    public = ca.public_key()
    assert isinstance(public, Ed25519PublicKey)
    public.verify(cert.signature, cert.tbs_certificate_bytes)  # raises on a certificate of another CA
    return cert


def test_certificates_are_signed_by_the_environments_ca_and_name_what_the_peer_checks(shipping):
    env = load(shipping / "smship.yml").environment("prod")
    collector = logship.for_host("shop", "prod", env, env.hosts[3], SECRETS)
    web = logship.for_host("shop", "prod", env, env.hosts[0], SECRETS)
    assert collector.collects and not collector.uploads and web.uploads and not web.collects
    served = _verify(collector.certificate, collector.trusted)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["db1.internal.example.com", "db1"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in served.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    _verify(web.certificate, web.trusted)
    assert web.key != collector.key
    # A collector given by its address: the uploaders check that address in its certificate.
    by_address = env.hosts[3].model_copy(update={"address": "203.0.113.31"})
    names = _verify(logship.for_host("shop", "prod", env, by_address, SECRETS).certificate, collector.trusted) \
        .extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("203.0.113.31")]
    # The same inputs, the same bytes: a second provision changes nothing.
    assert logship.for_host("shop", "prod", env, env.hosts[0], SECRETS) == web
    other = logship.for_host("shop", "prod", env, env.hosts[0],
                             {upstreamtls.CA_KEY: upstreamtls.new_key()})
    with pytest.raises(Exception):
        _verify(other.certificate, web.trusted)


def test_shipping_without_the_ca_key_says_which_secret_is_missing(shipping):
    env = load(shipping / "smship.yml").environment("prod")
    with pytest.raises(SmshipError, match="SMSHIP_UPSTREAM_CA_KEY is not in the secrets backend, and the 'logs' "
                                          "section needs it"):
        logship.for_host("shop", "prod", env, env.hosts[0], {})


def test_a_hosts_lines_on_the_collector_are_its_address_files(shipping):
    env = load(shipping / "smship.yml").environment("prod")
    assert logship.collector_source(env.hosts[0]) == ("--file", "/var/log/journal/remote/remote-203.0.113.11*.journal")
    named = env.hosts[0].model_copy(update={"address": "web1.internal.example.com"})
    assert logship.collector_source(named) == ("--directory", "/var/log/journal/remote", "_HOSTNAME=web1")


def shipping_facts(arrived: set[str], uploader: str = "active"):
    made = facts()
    made.ctx.env = made.ctx.env.model_copy(update={"logs": logship_section()})
    made.log_markers = logship.markers(made.ctx.env)
    for name in made.log_markers:
        made.hosts[name] = replace(made.hosts[name], log_marker=LogMarker(True, "", uploader))
    made.log_received = {m for n, m in made.log_markers.items() if n in arrived}
    return made


def logship_section():
    from smship.inventory.sections import Logs
    return Logs(collector="db1")


def test_log_format_passes_when_every_marker_arrived():
    made = shipping_facts({"web1", "web2", "jobs1"})
    status, reason, _ = checks.log_format(made)
    assert status == "pass" and "every app host's marker line reached the collector db1" in reason


def test_log_format_fails_naming_the_hosts_whose_marker_did_not_arrive():
    made = shipping_facts({"web1", "jobs1"}, uploader="inactive")
    status, reason, fix = checks.log_format(made)
    assert status == "fail"
    assert reason == "log shipping: web2: its marker did not reach db1 in 20 s (uploader inactive)"
    assert "journalctl -u systemd-journal-upload" in fix and "on web2" in fix


def test_log_format_fails_when_the_collector_cannot_be_read():
    made = shipping_facts(set())
    made.log_received, made.log_error = None, "db1: connection refused"
    status, reason, _ = checks.log_format(made)
    assert status == "fail" and "web1: the collector could not be read (db1: connection refused)" in reason


def test_markers_are_new_each_run_and_name_their_host(shipping):
    env = load(shipping / "smship.yml").environment("prod")
    first, second = logship.markers(env), logship.markers(env)
    assert set(first) == {"web1", "web2", "jobs1"} and first != second
    assert all(marker.endswith(f"from {host}") for host, marker in first.items())


def test_the_firewall_check_tries_the_collectors_port_as_it_tries_the_db_hosts(shipping):
    from smship.checklist.firewall import closed_ports
    from smship.context import EnvContext

    env = EnvContext.open("prod", shipping / "smship.yml").env
    assert [(host.name, port) for host, port in closed_ports(env)] == [
        ("db1", 5432), ("db1", 6379), ("db1", 19532)]
    with_logs(shipping, {"collector": "jobs1", "port": 19600})
    env = EnvContext.open("prod", shipping / "smship.yml").env
    assert ("jobs1", 19600) in [(host.name, port) for host, port in closed_ports(env)]
