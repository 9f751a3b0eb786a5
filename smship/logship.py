"""Log shipping: every app host's journal uploaded to a collector of the fleet.

Debian's own agents do the work: ``systemd-journal-upload`` on each app host
sends its journal over HTTPS to ``systemd-journal-remote`` on the collector,
which keeps one journal file per sender. Both sides prove who they are with a
certificate from the environment's CA (smship.upstreamtls): an uploader
sends only to a server the CA signed. Debian builds journal-remote without
GnuTLS, so it cannot check the uploaders' certificates in turn (it says
"Certificate checking disabled"): the collector's firewall admits its port
from the app hosts alone, and it names each sender's files after the
address it connected from.

The keys reach the daemons as systemd credentials (``LoadCredential=``): they
stay root's 0600 on disk, and the uploader's dynamic user still reads its key.
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from smship.errors import SmshipError
from smship.hostroles import is_app_host
from smship.inventory import Environment, Host
from smship.upstreamtls import CA_KEY, ca_certificate, issue, seed_of

CONFIG_DIR = "/etc/smship/logs"
REMOTE_DIR = "/var/log/journal/remote"
UPLOAD_UNIT = "systemd-journal-upload.service"
COLLECTOR_SOCKET = "systemd-journal-remote.socket"
COLLECTOR_UNIT = "systemd-journal-remote.service"
# smship check's marker lines: their syslog tag, and how long the collector is given to receive them.
CHECK_TAG = "smship-logcheck"
MARKER_WAIT = 20.0
# Where systemd hands each daemon its key (LoadCredential=key:...).
UPLOAD_KEY = f"/run/credentials/{UPLOAD_UNIT}/key"
COLLECTOR_KEY = f"/run/credentials/{COLLECTOR_UNIT}/key"


def collector_of(env: Environment) -> Host | None:
    """The host that keeps the fleet's journals; None without a ``logs`` section."""
    if env.logs is None:
        return None
    return next(h for h in env.hosts if h.name == env.logs.collector)


def ships(env: Environment, host: Host) -> bool:
    """Whether ``host`` uploads its journal: every app host, when there is a collector."""
    return env.logs is not None and is_app_host(host)


def markers(env: Environment) -> dict[str, str]:
    """A marker line, never logged before, for each app host to log and the collector to receive."""
    run = uuid.uuid4().hex[:12]
    return {h.name: f"smship check {run} from {h.name}" for h in env.hosts if ships(env, h)}


def collector_source(host: Host) -> tuple[str, ...]:
    """journalctl's arguments that read ``host``'s lines on the collector.

    journal-remote names a sender's files after its address as the collector saw it
    (``remote-ADDRESS.journal``, then archived ``remote-ADDRESS@...journal``); a host
    given by name in the inventory is found by its hostname instead, which must then
    be its inventory name.
    """
    try:
        address = str(ipaddress.ip_address(host.address))
    except ValueError:
        return ("--directory", REMOTE_DIR, f"_HOSTNAME={host.name}")
    return ("--file", f"{REMOTE_DIR}/remote-{address}*.journal")


def _address_names(address: str) -> list[x509.GeneralName]:
    try:
        return [x509.IPAddress(ipaddress.ip_address(address))]
    except ValueError:
        return [x509.DNSName(address)]


def collector_url(env: Environment) -> str:
    collector = collector_of(env)
    assert collector is not None and env.logs is not None
    address = f"[{collector.address}]" if ":" in collector.address else collector.address
    return f"https://{address}:{env.logs.port}"


@dataclass(frozen=True)
class LogShipping:
    """What one host's log shipping templates need."""

    url: str                 # the collector's HTTPS URL (uploaders)
    port: int
    trusted: str             # the environment's CA certificate
    certificate: str         # this host's own certificate and key
    key: str
    collects: bool           # the collector (journal-remote)
    uploads: bool            # an app host (journal-upload)
    config_dir: str = CONFIG_DIR
    collector_key: str = COLLECTOR_KEY
    upload_key: str = UPLOAD_KEY


def for_host(app_name: str, env_name: str, env: Environment, host: Host,
             secrets: dict[str, str]) -> LogShipping | None:
    """None on a host that neither collects nor uploads."""
    collector = collector_of(env)
    collects = collector is not None and host.name == collector.name
    uploads = ships(env, host)
    if not (collects or uploads):
        return None
    assert env.logs is not None
    if CA_KEY not in secrets:
        raise SmshipError(f"{CA_KEY} is not in the secrets backend, and the 'logs' section needs it (the CA "
                          f"of the hosts' log shipping certificates): 'smship provision' creates it in a file "
                          f"backend; with another backend store one there (URL-safe base64 of 32 random bytes)")
    seed = seed_of(secrets[CA_KEY])
    # One certificate per host: a collector that is an app host uploads its own journal to itself
    # too, so the collector holds every app host's lines alike. The uploader checks the collector's
    # address in it; the collector names the sender's files after its common name.
    names = _address_names(host.address) + [x509.DNSName(host.name)] if collects else [x509.DNSName(host.name)]
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if collects else []
    certificate, key = issue(seed, app_name, env_name, "logs", host.name, host.name, names,
                             usages + [ExtendedKeyUsageOID.CLIENT_AUTH])
    return LogShipping(url=collector_url(env), port=env.logs.port, trusted=ca_certificate(seed, app_name, env_name),
                       certificate=certificate, key=key, collects=collects, uploads=uploads)
