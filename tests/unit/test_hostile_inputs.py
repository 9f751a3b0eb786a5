"""Hostile inventories and environment variables: refused in one line, before any connection.

Each case changes one value of a valid inventory (or sets one ``SMSHIP_*``
variable), runs a command that would contact every host (``smship status``)
and asserts the exact one-line error and that no connection was attempted:
the SSH layer's one connect method and the socket layer both record calls.
"""

from __future__ import annotations

import json
import socket

import pytest
from invoke import Collection, Program

from smship.ssh import Fleet
from smship.tasks.status import status

# One field per line, so each case knows the line its error names.
TEMPLATE = """\
app:
  name: {app_name}
  python: {python}
environments:
  {env_name}:
    domain: {domain}
    app_path: {app_path}
    app_user: {app_user}
    ssh:
      user: {ssh_user}
    tls:
      source: {tls_source}
      certificate: {certificate}
      key: key.pem
    health:
      live: {live}
      ready: {ready}
    db:
      name: {db_name}
    worker:
      queues: [{queue}]
    secrets:
      backend: file
      path: {secrets_path}
    env:
      {env_key}: {env_value}
    hosts:
      - name: {host_name}
        address: {address}
        user: {host_user}
        jump: {jump}
        roles: [web, worker, beat, db]
"""

VALID = {
    "app_name": "shop", "python": "3.13", "env_name": "prod", "domain": "shop.example.com",
    "app_path": "/srv/shop", "app_user": "shop", "ssh_user": "deploy", "tls_source": "files",
    "certificate": "cert.pem", "live": "/health/live", "ready": "/health/ready", "db_name": "shop",
    "queue": "celery", "secrets_path": "secrets.env", "env_key": "SM_LOG_FORMAT", "env_value": "json",
    "host_name": "web1", "address": "192.0.2.10", "host_user": "deploy", "jump": "deploy@bastion.example.com",
}
# An environment's name is reported where its mapping starts.
LINE = {"app_name": 2, "python": 3, "env_name": 6, "domain": 6, "app_path": 7, "app_user": 8, "ssh_user": 10,
        "tls_source": 12, "certificate": 13, "live": 16, "ready": 17, "db_name": 19, "queue": 21,
        "secrets_path": 24, "env_key": 26, "env_value": 26, "host_name": 28, "address": 29,
        "host_user": 30, "jump": 31}

LONG = "x" * 5000
CONTROL = "must be a single line without control characters"
NOT_USER = "is not a user name (lower case letters, digits, '_' and '-', starting with a letter or '_', at most 32)"
SYSTEM_ACCOUNT = "is a system account; the app needs a user of its own (such as the app's name)"
SYSTEM_DIR = "is a system directory; use a directory of the app's own, such as /srv/<app>"
NOT_PATH = ("must be an absolute, normalised path of plain characters (letters, digits, '_', '.', '-', '/'), "
            "such as /srv/shop")
NOT_IDENTIFIER = ("is not a database identifier (lower case letters, digits and '_', starting with a letter or "
                  "'_', at most 63)")
NOT_ADDRESS = "is not an IP address or host name"
SECRET_ENV = "keep it in the secrets backend (secrets: section), not in the plain env map"
APP_NAME_RULE = "must be lower case letters, digits and '-', starting with a letter (at most 31)"
URL_PATH = "must be a URL path starting with '/'"
PYTHON = "is neither a Python version such as '3.13' nor an interpreter path"
QUEUE = "is not a plain name (letters, digits, '_', '.', '-'; not starting with '-' or '.')"

# (case id, template field, hostile value, field path, reason)
INVENTORY_CASES = [
    ("app-name-newline", "app_name", "shop\n", "app.name", CONTROL),
    ("app-name-line-separator", "app_name", "shop\u2028x", "app.name", CONTROL),
    ("app-name-paragraph-separator", "app_name", "shop\u2029", "app.name", CONTROL),
    ("app-name-nel", "app_name", "shop\u0085", "app.name", CONTROL),
    ("app-name-upper", "app_name", "Shop", "app.name", APP_NAME_RULE),
    ("app-name-option", "app_name", "-oProxyCommand=x", "app.name", APP_NAME_RULE),
    ("app-name-digit", "app_name", "1shop", "app.name", APP_NAME_RULE),
    ("app-name-oversized", "app_name", LONG, "app.name", "is 5000 characters long; the limit is 4096"),
    ("python-newline", "python", "3.13\n", "app.python", CONTROL),
    ("python-option", "python", "-c", "app.python", f"'-c' {PYTHON}"),
    ("python-shell", "python", "3.13; id", "app.python", f"'3.13; id' {PYTHON}"),
    ("python-relative", "python", "python3", "app.python", f"'python3' {PYTHON}"),
    ("env-name-newline", "env_name", "prod\n", "environments.prod\\n", "environment names are lower case letters, digits, '-' and '_'"),
    ("domain-trailing-newline", "domain", "shop.example.com\n", "environments.prod.domain", CONTROL),
    ("domain-option", "domain", "-oProxyCommand=x", "environments.prod.domain", f"'-oProxyCommand=x' {NOT_ADDRESS}"),
    ("domain-line-separator", "domain", "shop.example.com\u2028evil", "environments.prod.domain", CONTROL),
    ("domain-nul", "domain", "shop\x00.example.com", "environments.prod.domain", CONTROL),
    ("domain-space", "domain", "shop.example.com evil", "environments.prod.domain", f"'shop.example.com evil' {NOT_ADDRESS}"),
    ("domain-300", "domain", "a" * 300, "environments.prod.domain", f"{'a' * 60!r}... (300 characters) {NOT_ADDRESS}"),
    ("domain-oversized", "domain", LONG, "environments.prod.domain", "is 5000 characters long; the limit is 4096"),
    ("app-path-newline", "app_path", "/srv/shop\n", "environments.prod.app_path", CONTROL),
    ("app-path-root", "app_path", "/", "environments.prod.app_path", NOT_PATH),
    ("app-path-etc", "app_path", "/etc", "environments.prod.app_path", f"/etc {SYSTEM_DIR}"),
    ("app-path-usr", "app_path", "/usr", "environments.prod.app_path", f"/usr {SYSTEM_DIR}"),
    ("app-path-usr-local", "app_path", "/usr/local/shop", "environments.prod.app_path", f"/usr/local/shop {SYSTEM_DIR}"),
    ("app-path-bin", "app_path", "/bin", "environments.prod.app_path", f"/bin {SYSTEM_DIR}"),
    ("app-path-var", "app_path", "/var", "environments.prod.app_path", f"/var {SYSTEM_DIR}"),
    ("app-path-var-lib", "app_path", "/var/lib", "environments.prod.app_path", f"/var/lib {SYSTEM_DIR}"),
    ("app-path-root-home", "app_path", "/root", "environments.prod.app_path", f"/root {SYSTEM_DIR}"),
    ("app-path-home", "app_path", "/home", "environments.prod.app_path", f"/home {SYSTEM_DIR}"),
    ("app-path-boot", "app_path", "/boot", "environments.prod.app_path", f"/boot {SYSTEM_DIR}"),
    ("app-path-proc", "app_path", "/proc/self", "environments.prod.app_path", f"/proc/self {SYSTEM_DIR}"),
    ("app-path-sys", "app_path", "/sys", "environments.prod.app_path", f"/sys {SYSTEM_DIR}"),
    ("app-path-dev", "app_path", "/dev/shm/shop", "environments.prod.app_path", f"/dev/shm/shop {SYSTEM_DIR}"),
    ("app-path-run", "app_path", "/run", "environments.prod.app_path", f"/run {SYSTEM_DIR}"),
    ("app-path-tmp", "app_path", "/tmp/shop", "environments.prod.app_path", f"/tmp/shop {SYSTEM_DIR}"),
    ("app-path-dotdot", "app_path", "/srv/../etc", "environments.prod.app_path", NOT_PATH),
    ("app-path-relative", "app_path", "srv/shop", "environments.prod.app_path", NOT_PATH),
    ("app-path-trailing-slash", "app_path", "/srv/shop/", "environments.prod.app_path", NOT_PATH),
    ("app-path-space", "app_path", "/srv/my shop", "environments.prod.app_path", NOT_PATH),
    ("app-user-root", "app_user", "root", "environments.prod.app_user", f"'root' {SYSTEM_ACCOUNT}"),
    ("app-user-daemon", "app_user", "daemon", "environments.prod.app_user", f"'daemon' {SYSTEM_ACCOUNT}"),
    ("app-user-bin", "app_user", "bin", "environments.prod.app_user", f"'bin' {SYSTEM_ACCOUNT}"),
    ("app-user-sys", "app_user", "sys", "environments.prod.app_user", f"'sys' {SYSTEM_ACCOUNT}"),
    ("app-user-nobody", "app_user", "nobody", "environments.prod.app_user", f"'nobody' {SYSTEM_ACCOUNT}"),
    ("app-user-www-data", "app_user", "www-data", "environments.prod.app_user", f"'www-data' {SYSTEM_ACCOUNT}"),
    ("app-user-postgres", "app_user", "postgres", "environments.prod.app_user", f"'postgres' {SYSTEM_ACCOUNT}"),
    ("app-user-redis", "app_user", "redis", "environments.prod.app_user", f"'redis' {SYSTEM_ACCOUNT}"),
    ("app-user-systemd", "app_user", "systemd-network", "environments.prod.app_user", f"'systemd-network' {SYSTEM_ACCOUNT}"),
    ("app-user-option", "app_user", "-oProxyCommand", "environments.prod.app_user", f"'-oProxyCommand' {NOT_USER}"),
    ("app-user-newline", "app_user", "shop\n", "environments.prod.app_user", CONTROL),
    ("ssh-user-newline", "ssh_user", "deploy\n", "environments.prod.ssh.user", CONTROL),
    ("ssh-user-option", "ssh_user", "-oProxyCommand=x", "environments.prod.ssh.user", f"'-oProxyCommand=x' {NOT_USER}"),
    ("ssh-user-space", "ssh_user", "de ploy", "environments.prod.ssh.user", f"'de ploy' {NOT_USER}"),
    ("ssh-user-at", "ssh_user", "deploy@evil", "environments.prod.ssh.user", f"'deploy@evil' {NOT_USER}"),
    ("tls-self-signed-outside-lab", "tls_source", "self-signed", "environments.prod.tls.source",
     "self-signed certificates are for labs only: give certificate and key files, or mark a throwaway "
     "environment with `lab: true`"),
    ("tls-certificate-newline", "certificate", "cert.pem\nx", "environments.prod.tls.certificate", CONTROL),
    ("health-live-crlf", "live", "/health\r\nX-Evil: 1", "environments.prod.health.live", CONTROL),
    ("health-ready-relative", "ready", "health", "environments.prod.health.ready.path", URL_PATH),
    ("health-ready-space", "ready", "/health ready", "environments.prod.health.ready.path", URL_PATH),
    ("health-live-nel", "live", "/health\u0085", "environments.prod.health.live", CONTROL),
    ("db-name-sql", "db_name", "shop; ALTER ROLE shop SUPERUSER", "environments.prod.db.name",
     f"'shop; ALTER ROLE shop SUPERUSER' {NOT_IDENTIFIER}"),
    ("db-name-comment", "db_name", "shop--", "environments.prod.db.name", f"'shop--' {NOT_IDENTIFIER}"),
    ("db-name-newline", "db_name", "shop\n", "environments.prod.db.name", CONTROL),
    ("db-name-quote", "db_name", 'shop"x', "environments.prod.db.name", f"'shop\"x' {NOT_IDENTIFIER}"),
    ("db-name-upper", "db_name", "Shop", "environments.prod.db.name", f"'Shop' {NOT_IDENTIFIER}"),
    ("db-name-postgres", "db_name", "postgres", "environments.prod.db.name", "'postgres' is a name Postgres keeps for itself"),
    ("db-name-template", "db_name", "template1", "environments.prod.db.name", "'template1' is a name Postgres keeps for itself"),
    ("db-name-pg-prefix", "db_name", "pg_shop", "environments.prod.db.name", "'pg_shop' is a name Postgres keeps for itself"),
    ("db-name-all", "db_name", "all", "environments.prod.db.name", "'all' is a name Postgres keeps for itself"),
    ("db-name-64", "db_name", "s" * 64, "environments.prod.db.name", f"{'s' * 64!r} {NOT_IDENTIFIER}"),
    ("queue-option", "queue", "-Qevil", "environments.prod.worker.queues", f"'-Qevil' {QUEUE}"),
    ("queue-newline", "queue", "celery\n", "environments.prod.worker.queues[0]", CONTROL),
    ("secrets-path-newline", "secrets_path", "secrets.env\n", "environments.prod.secrets.path", CONTROL),
    ("env-db-password", "env_key", "SM_DB_PASSWORD", "environments.prod.env.SM_DB_PASSWORD",
     f"looks like a secret (its name says it is a secret): {SECRET_ENV}"),
    ("env-aws-access-key-id", "env_key", "AWS_ACCESS_KEY_ID", "environments.prod.env.AWS_ACCESS_KEY_ID",
     f"looks like a secret (its name says it is a secret): {SECRET_ENV}"),
    ("env-api-token", "env_key", "STRIPE_API_TOKEN", "environments.prod.env.STRIPE_API_TOKEN",
     f"looks like a secret (its name says it is a secret): {SECRET_ENV}"),
    ("env-webhook-secret", "env_key", "SM_WEBHOOK_SECRET_VALUE", "environments.prod.env.SM_WEBHOOK_SECRET_VALUE",
     f"looks like a secret (its name says it is a secret): {SECRET_ENV}"),
    ("env-url-with-password", "env_value", "redis://:hunter2@db1:6379/0", "environments.prod.env.SM_LOG_FORMAT",
     f"looks like a secret (its value is a URL with a password): {SECRET_ENV}"),
    ("env-value-paragraph-separator", "env_value", "json\u2029x", "environments.prod.env.SM_LOG_FORMAT", CONTROL),
    ("env-value-oversized", "env_value", LONG, "environments.prod.env.SM_LOG_FORMAT", "is 5000 characters long; the limit is 4096"),
    ("env-key-lower", "env_key", "sm_log", "environments.prod.env.sm_log",
     "environment variable names are upper case letters, digits and '_'"),
    ("host-name-newline", "host_name", "web1\n", "environments.prod.hosts[0].name", CONTROL),
    ("host-name-option", "host_name", "-web1", "environments.prod.hosts[0].name",
     "'-web1' must be a lower-case host label (letters, digits, '-')"),
    ("address-option", "address", "-oProxyCommand=x", "environments.prod.hosts[0].address", f"'-oProxyCommand=x' {NOT_ADDRESS}"),
    ("address-newline", "address", "192.0.2.10\n", "environments.prod.hosts[0].address", CONTROL),
    ("address-argument", "address", "192.0.2.10 -p 2222", "environments.prod.hosts[0].address", f"'192.0.2.10 -p 2222' {NOT_ADDRESS}"),
    ("address-line-separator", "address", "192.0.2.10\u2028", "environments.prod.hosts[0].address", CONTROL),
    ("host-user-option", "host_user", "-l", "environments.prod.hosts[0].user", f"'-l' {NOT_USER}"),
    ("host-user-root-newline", "host_user", "root\nx", "environments.prod.hosts[0].user", CONTROL),
    ("jump-user-option", "jump", "-oProxyCommand=x@bastion.example.com", "environments.prod.hosts[0].jump",
     f"'-oProxyCommand=x' {NOT_USER}"),
    ("jump-host-option", "jump", "deploy@-oProxyCommand=x", "environments.prod.hosts[0].jump",
     f"'-oProxyCommand=x' {NOT_ADDRESS}"),
    ("jump-newline", "jump", "deploy@bastion\n", "environments.prod.hosts[0].jump", CONTROL),
]


@pytest.fixture
def no_contact(monkeypatch):
    """Record every SSH connection and socket connect; each case asserts there was none."""
    attempts: list[str] = []

    def refuse_connection(self, endpoint, gateway=None):
        attempts.append(f"ssh {endpoint}")
        raise AssertionError("an SSH connection was attempted")

    def refuse_socket(self, address):
        attempts.append(f"socket {address}")
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(Fleet, "_new_connection", refuse_connection)
    monkeypatch.setattr(socket.socket, "connect", refuse_socket)
    for name in ("SMSHIP_PARALLEL", "SMSHIP_OUTPUT", "SMSHIP_SSH_USER", "SMSHIP_INVENTORY",
                 "SMSHIP_ACCEPT_UNKNOWN_HOSTS", "SMSHIP_KNOWN_HOSTS", "SMSHIP_SSH_IDENTITY", "SMSHIP_LAB_BRIDGE",
                 "SMSHIP_LAB_SUBNET", "SMSHIP_LAB_DISTRO", "SMSHIP_LAB_DIR"):
        monkeypatch.delenv(name, raising=False)
    return attempts


def inventory_text(**changes: str) -> str:
    values = {**VALID, **changes}
    # JSON strings are YAML double-quoted scalars: every character arrives as written.
    return TEMPLATE.format(**{k: json.dumps(v) for k, v in values.items()})


def run_status(capsys, *argv: str) -> tuple[int, list[str]]:
    program = Program(namespace=Collection(status), binary="smship")
    with pytest.raises(SystemExit) as exit_info:
        program.run(["smship", "status", *argv])
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def test_the_template_is_a_valid_inventory(tmp_path):
    from smship.inventory import load

    path = tmp_path / "smship.yml"
    path.write_text(inventory_text())
    env = load(path).environment("prod")
    assert env.hosts[0].jump == "deploy@bastion.example.com"


@pytest.mark.parametrize("field, value, where, reason",
                         [case[1:] for case in INVENTORY_CASES], ids=[case[0] for case in INVENTORY_CASES])
def test_a_hostile_inventory_value_is_one_line_before_any_connection(field, value, where, reason,
                                                                     tmp_path, capsys, no_contact):
    path = tmp_path / "smship.yml"
    path.write_text(inventory_text(**{field: value}))
    env = "prod" if field != "env_name" else value
    code, lines = run_status(capsys, env, "-i", str(path))
    assert lines == [f"{path}:{LINE[field]}: {where}: {reason}"]
    assert code == 2
    assert no_contact == []


# (case id, variable, value, the one line)
SETTINGS_CASES = [
    ("parallel-word", "SMSHIP_PARALLEL", "abc", "error: SMSHIP_PARALLEL='abc': must be a whole number from 1 to 200"),
    ("parallel-zero", "SMSHIP_PARALLEL", "0", "error: SMSHIP_PARALLEL='0': must be a whole number from 1 to 200"),
    ("parallel-huge", "SMSHIP_PARALLEL", "100000", "error: SMSHIP_PARALLEL='100000': must be a whole number from 1 to 200"),
    ("output-xml", "SMSHIP_OUTPUT", "xml", "error: SMSHIP_OUTPUT='xml': must be 'text' or 'json'"),
    ("ssh-user-option", "SMSHIP_SSH_USER", "-oProxyCommand=x",
     f"error: SMSHIP_SSH_USER='-oProxyCommand=x': '-oProxyCommand=x' {NOT_USER}"),
    ("ssh-user-newline", "SMSHIP_SSH_USER", "deploy\nx",
     f"error: SMSHIP_SSH_USER='deploy\\nx': 'deploy\\nx' {NOT_USER}"),
    ("accept-unknown-maybe", "SMSHIP_ACCEPT_UNKNOWN_HOSTS", "maybe",
     "error: SMSHIP_ACCEPT_UNKNOWN_HOSTS='maybe': must be true or false"),
]


@pytest.mark.parametrize("variable, value, line", [c[1:] for c in SETTINGS_CASES], ids=[c[0] for c in SETTINGS_CASES])
def test_a_hostile_smship_variable_is_one_line_naming_it(variable, value, line, tmp_path, capsys, monkeypatch,
                                                         no_contact):
    path = tmp_path / "smship.yml"
    path.write_text(inventory_text())
    monkeypatch.setenv(variable, value)
    code, lines = run_status(capsys, "prod", "-i", str(path))
    assert lines == [line]
    assert code == 2
    assert no_contact == []


@pytest.mark.parametrize("name", ["root", "postgres", "redis", "backup"])
def test_an_app_named_like_a_system_account_needs_an_app_user(name, tmp_path, capsys, no_contact):
    path = tmp_path / "smship.yml"
    path.write_text(inventory_text(app_name=name).replace('    app_user: "shop"\n', ""))
    code, lines = run_status(capsys, "prod", "-i", str(path))
    assert (code, lines) == (2, [f"{path}:2: app.name: {name!r} {SYSTEM_ACCOUNT}; set app_user in environment 'prod'"])
    assert no_contact == []


def test_output_option_xml_is_one_line(tmp_path, capsys, no_contact):
    path = tmp_path / "smship.yml"
    path.write_text(inventory_text())
    code, lines = run_status(capsys, "prod", "-i", str(path), "-o", "xml")
    assert (code, lines) == (2, ["error: -o/--output 'xml': must be 'text' or 'json'"])
    assert no_contact == []


def test_a_binary_inventory_names_file_and_line(tmp_path, capsys, monkeypatch, no_contact):
    path = tmp_path / "smship.yml"
    path.write_bytes(b"app:\n  name: shop\n\xff\xfe\x00binary\n")
    monkeypatch.setenv("SMSHIP_INVENTORY", str(path))
    code, lines = run_status(capsys, "prod")
    assert (code, lines) == (2, [f"{path}:3: not UTF-8 text (byte 19); an inventory is a YAML file"])
    assert no_contact == []


def test_an_inventory_path_that_is_a_directory_is_one_line(tmp_path, capsys, no_contact):
    code, lines = run_status(capsys, "prod", "-i", str(tmp_path))
    assert (code, lines) == (2, [f"{tmp_path}: is a directory, not an inventory file"])
    assert no_contact == []


def test_an_oversized_inventory_is_refused_with_its_limit(tmp_path, capsys, no_contact):
    path = tmp_path / "smship.yml"
    path.write_text(inventory_text() + "# " + "x" * (1024 * 1024) + "\n")
    code, lines = run_status(capsys, "prod", "-i", str(path))
    size = path.stat().st_size
    assert (code, lines) == (2, [f"{path}: is {size} bytes; an inventory is at most 1048576"])
    assert no_contact == []


def test_nested_yaml_aliases_cost_their_size_not_their_expansion(tmp_path, capsys, no_contact):
    bomb = "".join(f"  x{i}: &x{i} [*x{i - 1}, *x{i - 1}, *x{i - 1}, *x{i - 1}]\n" for i in range(1, 30))
    path = tmp_path / "smship.yml"
    path.write_text(inventory_text() + "bomb:\n  x0: &x0 [a]\n" + bomb)
    code, lines = run_status(capsys, "prod", "-i", str(path))
    assert (code, lines) == (2, [f"{path}:34: bomb: unknown field"])
    assert no_contact == []


@pytest.mark.parametrize("variable, value, reason", [
    ("SMSHIP_LAB_BRIDGE", "-evil", "'-evil' is not an interface name (1-15 letters, digits, '_', '.', '-', "
                                   "starting with a letter or digit)"),
    ("SMSHIP_LAB_SUBNET", "10.0.0.0/30", "10.0.0.0/30 is too small; use a /24 or larger"),
    ("SMSHIP_LAB_SUBNET", "not-a-net", "'not-a-net' is not an IPv4 subnet such as 192.168.250.0/24"),
    ("SMSHIP_LAB_DISTRO", "sid", "must be 'trixie' or 'bookworm'"),
])
def test_a_hostile_lab_variable_is_one_line_naming_it(variable, value, reason, monkeypatch, tmp_path, capsys,
                                                      no_contact):
    from smship.lab import tasks as lab_tasks

    monkeypatch.setenv(variable, value)
    program = Program(namespace=Collection(lab_tasks.status), binary="smship")
    with pytest.raises(SystemExit) as exit_info:
        program.run(["smship", "status", "--dir", str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert exit_info.value.code == 1
    assert lines == [f"error: {variable}={value!r}: {reason}"]
    assert no_contact == []
