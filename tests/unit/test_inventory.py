"""Inventory validation: every bad input fails with file, line, field and reason."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from smship.inventory import InventoryError, load, parse

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory.example"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def problems_of(data: dict, tmp_path: Path) -> list[str]:
    path = tmp_path / "smship.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(InventoryError) as caught:
        load(path)
    return caught.value.problems


def test_the_example_inventory_validates():
    loaded = load(EXAMPLE)
    prod = loaded.environment("prod")
    assert [h.name for h in prod.hosts] == ["web1", "web2", "jobs1", "db1"]
    assert prod.hosts[2].jump == "deploy@bastion.example.com:22"
    assert prod.resolved_app_path(loaded.app) == "/srv/shop"
    assert prod.tls.certificate == Path("~/certs/shop.example.com.fullchain.pem").expanduser()
    assert loaded.app.source == (ROOT / "../shop")
    assert loaded.environment("staging").secrets.backend == "env"


def prod(data: dict) -> dict:
    return data["environments"]["prod"]


BAD_INPUTS = [
    ("unknown role",
     lambda d: prod(d)["hosts"][0].update(roles=["web", "cache"]),
     "environments.prod.hosts[0].roles[1]: unknown role 'cache' (roles are: web, worker, beat, db, lb)"),
    ("two beat hosts",
     lambda d: prod(d)["hosts"][0].update(roles=["web", "beat"]),
     "environments.prod.hosts[2].roles: a second 'beat' host (first: hosts[0])"),
    ("no beat while workers exist",
     lambda d: prod(d)["hosts"][2].update(roles=["worker"]),
     "environments.prod.hosts: workers need exactly one host with the 'beat' role"),
    ("duplicate host name",
     lambda d: prod(d)["hosts"][3].update(name="web1"),
     "environments.prod.hosts[3].name: duplicate host 'web1' (also hosts[0])"),
    ("duplicate address",
     lambda d: prod(d)["hosts"][1].update(address="203.0.113.11"),
     "environments.prod.hosts[1].address: 203.0.113.11:22 is already hosts[0]"),
    ("missing domain",
     lambda d: prod(d).pop("domain"),
     "environments.prod.domain: Field required"),
    ("domain that is not a name",
     lambda d: prod(d).update(domain="shop example"),
     "environments.prod.domain: 'shop example' is not an IP address or host name"),
    ("malformed address",
     lambda d: prod(d)["hosts"][1].update(address="10.0.0.300"),
     "environments.prod.hosts[1].address: '10.0.0.300' is not an IP address or host name"),
    ("address with shell in it",
     lambda d: prod(d)["hosts"][1].update(address="web2;reboot"),
     "environments.prod.hosts[1].address: 'web2;reboot' is not an IP address or host name"),
    ("malformed jump host",
     lambda d: prod(d)["hosts"][2].update(jump="deploy@@bastion"),
     "environments.prod.hosts[2].jump: 'deploy@@bastion' is not [user@]host[:port]"),
    ("port out of range",
     lambda d: prod(d)["hosts"][2].update(port=70000),
     "environments.prod.hosts[2].port: Input should be less than or equal to 65535"),
    ("unknown field",
     lambda d: prod(d)["web"].update(wrokers=3),
     "environments.prod.web.wrokers: unknown field"),
    ("host without roles",
     lambda d: prod(d)["hosts"][0].update(roles=[]),
     "environments.prod.hosts[0].roles: List should have at least 1 item"),
    ("secret in the plain env",
     lambda d: prod(d)["env"].update(SM_SECRET_KEY="hunter2"),
     "environments.prod.env.SM_SECRET_KEY: is a secret: keep it in the secrets backend"),
    ("tls files without a key",
     lambda d: prod(d)["tls"].pop("key"),
     "environments.prod.tls.key: required when source is 'files'"),
    ("bad batch size",
     lambda d: prod(d)["web"].update(batch_size="150%"),
     "environments.prod.web.batch_size: must be a host count or a share from '1%' to '100%'"),
    ("file secrets without a path",
     lambda d: prod(d)["secrets"].pop("path"),
     "environments.prod.secrets.path: required when backend is 'file'"),
    ("bad bucket name",
     lambda d: prod(d)["storage"].update(bucket="Shop_Uploads"),
     "environments.prod.storage.bucket: 'Shop_Uploads' is not an S3 bucket name"),
    ("storage endpoint that is not a URL",
     lambda d: prod(d)["storage"].update(endpoint_url="s3.example.com"),
     "environments.prod.storage.endpoint_url: 's3.example.com' is not an http(s)://host[:port] URL"),
    ("backup over plain http",
     lambda d: prod(d)["backup"].update(endpoint_url="http://s3.internal.example.com:9000"),
     "environments.prod.backup.endpoint_url: pgBackRest reaches S3 only over HTTPS"),
    ("backup endpoint by IP address",
     lambda d: prod(d)["storage"].update(endpoint_url="https://10.0.0.5:9000"),
     "environments.prod.storage.endpoint_url: pgBackRest checks the certificate's DNS name, not IP addresses"),
    ("backup without a db host",
     lambda d: prod(d)["hosts"].pop(3),
     "environments.prod.backup: backs up the 'db' host's Postgres, and no host has the 'db' role"),
    ("backup without a bucket",
     lambda d: (prod(d).pop("storage"), prod(d)["backup"].pop("bucket")),
     "environments.prod.backup.bucket: required when there is no 'storage' section to take it from"),
    ("bad backup schedule",
     lambda d: prod(d)["backup"].update(schedule="daily; rm -rf /"),
     "environments.prod.backup.schedule: 'daily; rm -rf /' is not a systemd OnCalendar expression"),
    ("unknown backup tool",
     lambda d: prod(d)["backup"].update(tool="wal-g"),
     "environments.prod.backup.tool: Input should be 'pgbackrest'"),
    ("pooler on Postgres' port",
     lambda d: prod(d)["db"].update(pooler={"port": 5432}),
     "environments.prod.db.pooler.port: is Postgres' own port (5432): give PgBouncer another"),
    ("unknown pooler",
     lambda d: prod(d)["db"].update(pooler="pgpool"),
     "environments.prod.db.pooler.tool: Input should be 'pgbouncer'"),
    ("unknown pool mode",
     lambda d: prod(d)["db"].update(pooler={"pool_mode": "statement"}),
     "environments.prod.db.pooler.pool_mode: Input should be 'transaction' or 'session'"),
    ("pooler without a db host",
     lambda d: (prod(d)["db"].update(pooler="pgbouncer"), prod(d).pop("backup"), prod(d)["hosts"].pop(3)),
     "environments.prod.db.pooler: runs on the 'db' host, and no host has the 'db' role"),
    ("bad app name",
     lambda d: d["app"].update(name="Shop App"),
     "app.name: must be lower case letters"),
]


@pytest.mark.parametrize("case, mutate, expected", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inventory_names_file_field_and_reason(case, mutate, expected, tmp_path):
    data = example()
    mutate(data)
    problems = problems_of(data, tmp_path)
    matching = [p for p in problems if expected in p]
    assert matching, f"{case}: expected {expected!r} in {problems}"
    line = matching[0]
    assert line.startswith(f"{tmp_path / 'smship.yml'}:")
    assert "\n" not in line


def test_error_points_at_the_line_of_the_field(tmp_path):
    text = EXAMPLE.read_text().replace("address: 203.0.113.12", "address: 203.0.113.999")
    with pytest.raises(InventoryError) as caught:
        parse(text, tmp_path / "smship.yml")
    expected_line = next(i for i, line in enumerate(text.splitlines(), 1) if "203.0.113.999" in line)
    assert caught.value.problems[0].startswith(f"{tmp_path / 'smship.yml'}:{expected_line}: ")


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(InventoryError) as caught:
        parse("app:\n  name: shop\nenvironments: [\n", tmp_path / "smship.yml")
    assert caught.value.problems[0].startswith(f"{tmp_path / 'smship.yml'}:4: not valid YAML")


def test_missing_file_says_how_to_start(tmp_path):
    with pytest.raises(InventoryError) as caught:
        load(tmp_path / "nope.yml")
    assert "no such inventory file" in str(caught.value) and "inventory.example" in str(caught.value)


def test_unknown_environment_lists_the_known_ones():
    with pytest.raises(InventoryError) as caught:
        load(EXAMPLE).environment("prdo")
    assert "no environment 'prdo' (it has: prod, staging)" in str(caught.value)


def test_relative_paths_resolve_against_the_inventory_file(tmp_path):
    data = example()
    prod(data)["secrets"]["path"] = "secrets/prod.env"
    path = tmp_path / "deploy" / "smship.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(data))
    assert load(path).environment("prod").secrets.path == tmp_path / "deploy" / "secrets/prod.env"


@pytest.mark.parametrize("batch, hosts, expected", [(1, 5, 1), (3, 2, 2), ("34%", 3, 1), ("50%", 4, 2), ("1%", 3, 1), ("100%", 4, 4)])
def test_batch_size_turns_into_a_host_count(batch, hosts, expected):
    data = copy.deepcopy(example())
    prod(data)["web"]["batch_size"] = batch
    env = parse(yaml.safe_dump(data), Path("smship.yml")).environments["prod"]
    assert env.web.batch_count(hosts) == expected


def test_settings_from_the_environment_override_ssh(monkeypatch):
    from smship.context import EnvContext

    monkeypatch.setenv("SMSHIP_SSH_USER", "ci")
    monkeypatch.setenv("SMSHIP_ACCEPT_UNKNOWN_HOSTS", "true")
    ctx = EnvContext.open("prod", EXAMPLE)
    assert ctx.env.ssh.user == "ci" and ctx.env.ssh.accept_unknown_hosts is True
    assert ctx.env.ssh.port == 22


def test_backup_takes_bucket_region_and_endpoint_from_storage():
    env = load(EXAMPLE).environment("prod")
    assert env.backup_bucket() == "shop-prod-backups" and env.backup_region() == "eu-west-1"
    data = example()
    prod(data)["backup"].pop("bucket")
    prod(data)["storage"]["endpoint_url"] = "https://s3.internal.example.com:9000"
    env = parse(yaml.safe_dump(data), Path("smship.yml")).environments["prod"]
    assert env.backup_bucket() == "shop-prod-uploads"
    assert env.backup_endpoint() == "https://s3.internal.example.com:9000"
