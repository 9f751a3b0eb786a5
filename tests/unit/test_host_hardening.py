"""What root does on a host cannot be steered by the app user, and secrets keep to their formats."""

from __future__ import annotations

import base64
import errno
import hashlib
import hmac
import json
import os
import re
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from smship import scram
from smship.engine.roles import Renderer, RoleError
from smship.layout import Layout
from smship.remote import agent
from smship.steps.lock import left_by_a_dead_process, new_holder
from smship.steps.migrate import in_app_environment
from smship.templating import environment, ini_value, redis_string, sandbox_properties

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = Layout(app="shop", user="shop", root="/srv/shop")


# Finding: root appended to a log in the app's writable shared/ and followed links.

def test_the_deploy_log_is_roots_own_not_in_the_apps_writable_tree():
    assert not LAYOUT.audit_log.startswith(LAYOUT.shared + "/")
    assert os.path.dirname(LAYOUT.audit_log) == LAYOUT.root


def test_audit_never_writes_through_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("root's file\n")
    (tmp_path / "deploys.jsonl").symlink_to(victim)
    answer = agent.audit({"path": str(tmp_path / "deploys.jsonl"), "entry": {"result": "ok"}})
    assert not answer["ok"] and "deploys.jsonl" in answer["error"]
    assert victim.read_text() == "root's file\n"


def test_audit_never_walks_through_a_linked_directory(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "logs").symlink_to(tmp_path / "elsewhere")
    assert not agent.audit({"path": str(tmp_path / "logs" / "deploys.jsonl"), "entry": {"result": "ok"}})["ok"]
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a directory to another user")
def test_records_are_refused_in_a_directory_another_user_can_write(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    answer = agent.audit({"path": str(theirs / "deploys.jsonl"), "entry": {"result": "ok"}})
    assert not answer["ok"] and "not root's own directory" in answer["error"]
    assert not (theirs / "deploys.jsonl").exists()


def test_audit_appends_one_json_line_and_creates_missing_directories(tmp_path):
    path = tmp_path / "new" / "deploys.jsonl"
    agent.audit({"path": str(path), "entry": {"result": "ok"}})
    agent.audit({"path": str(path), "entry": {"result": "failed"}})
    assert [json.loads(line)["result"] for line in path.read_text().splitlines()] == ["ok", "failed"]


# Finding: the lock was a mkdir, then its holder written: a full disk left an empty holder.

def test_a_lock_that_cannot_be_written_leaves_no_lock(tmp_path, monkeypatch):
    path = str(tmp_path / "deploy.lock")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(agent.json, "dump", disk_full)
    answer = agent.lock({"path": path, "holder": new_holder("deploy prod").record()})
    assert not answer["ok"] and "No space left" in answer["error"]
    assert os.listdir(tmp_path) == []          # neither a lock nor a half-made one


def test_the_lock_appears_with_its_holder_and_a_second_taker_is_refused(tmp_path):
    path = str(tmp_path / "deploy.lock")
    first, second = new_holder("deploy prod").record(), new_holder("provision prod").record()
    assert agent.lock({"path": path, "holder": first}) == {"ok": True}
    assert agent.lock({"path": path, "holder": second}) == {"ok": False, "holder": first}
    assert agent.unlock({"path": path, "token": first["token"]}) == {"ok": True}
    assert os.listdir(tmp_path) == []


def test_a_lock_from_an_earlier_boot_is_stale_even_if_its_pid_lives():
    holder = replace(new_holder("deploy prod"), pid=os.getpid(), boot_id="0" * 32)
    assert left_by_a_dead_process(holder)
    assert not left_by_a_dead_process(new_holder("deploy prod"))
    assert not left_by_a_dead_process(replace(holder, machine=socket.gethostname() + "-other"))


# Finding: the role password went to Postgres as text and its fingerprint on a command line.

def test_the_scram_verifier_matches_rfc_7677s_exchange():
    """RFC 7677's SCRAM-SHA-256 example: its client proof and server signature check against our keys."""
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    verifier = scram.verifier("pencil", salt)
    match = re.fullmatch(r"SCRAM-SHA-256\$4096:([^$]+)\$([^:]+):(.+)", verifier)
    assert match and base64.b64decode(match.group(1)) == salt
    stored_key, server_key = base64.b64decode(match.group(2)), base64.b64decode(match.group(3))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}".encode()
    signature = hmac.new(server_key, auth, hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_key = bytes(a ^ b for a, b in zip(proof, hmac.new(stored_key, auth, hashlib.sha256).digest()))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_the_scram_verifier_salts_each_time_and_prepares_the_password_like_postgres():
    assert scram.verifier("pencil") != scram.verifier("pencil")
    salt = b"0123456789abcdef"
    # SASLprep: a non-ASCII space is a space, a soft hyphen is nothing, NFKC folds "ﬁ".
    assert scram.verifier("pen\u00adcil\u00a0\ufb01", salt) == scram.verifier("pencil fi", salt)
    # A password SASLprep refuses (a control character) is hashed as its UTF-8, as Postgres does.
    assert scram.saslprep("p\u0007\u00e9") == "p\u0007\u00e9".encode()


def test_a_psql_meta_argument_keeps_quotes_and_backslashes():
    from smship.templating import psql_meta_literal
    assert psql_meta_literal("a'b\\c") == "'a''b\\\\c'"
    with pytest.raises(ValueError):
        psql_meta_literal("a\nb")


# Finding: secret values were rendered into redis.conf and pgbackrest.conf unescaped.

def redis_words(line: str) -> list[str]:
    """How Redis splits a config line (its double-quoted strings with escapes), for the cases rendered here."""
    words, i = [], 0
    while i < len(line):
        if line[i] == " ":
            i += 1
            continue
        if line[i] == '"':
            word, i = "", i + 1
            while line[i] != '"':
                if line[i] == "\\":
                    i += 1
                word += line[i]
                i += 1
            assert i + 1 == len(line) or line[i + 1] == " ", "a closing quote must end the word"
            words.append(word)
            i += 1
        else:
            end = line.find(" ", i)
            end = len(line) if end < 0 else end
            words.append(line[i:end])
            i = end
    return words


@pytest.mark.parametrize("password", ["with space # and hash", 'quote " and \\ back', "plain"])
def test_redis_reads_back_the_password_it_was_given(password):
    template = environment(None).get_template("redis.conf.j2")
    text = template.render(secrets={"SM_REDIS_PASSWORD": password}, host={"address": "10.0.0.31"})
    line = next(l for l in text.splitlines() if l.startswith("requirepass "))
    assert redis_words(line) == ["requirepass", password]


def test_a_value_no_format_can_hold_is_refused_naming_the_key_not_the_value():
    secret = "line\nbind 0.0.0.0"
    for quote in (redis_string, ini_value):
        with pytest.raises(ValueError) as refused:
            quote(secret, "SM_REDIS_PASSWORD")
        assert "SM_REDIS_PASSWORD" in str(refused.value) and "bind" not in str(refused.value)
    with pytest.raises(ValueError, match="AWS_SECRET_ACCESS_KEY starts or ends with a space"):
        ini_value(" padded", "AWS_SECRET_ACCESS_KEY")
    # In a role, before any host changes: one line naming the role, the template and the key.
    renderer = Renderer(environment(None), {"secrets": {"SM_REDIS_PASSWORD": secret}, "host": {"address": "10.0.0.31"}},
                        ROOT / "roles" / "db.yml")
    with pytest.raises(RoleError, match="redis.conf.j2'?: SM_REDIS_PASSWORD has a control character") as refused:
        renderer.template("redis.conf.j2")
    assert "bind" not in str(refused.value)


# Finding: transient units ran with only User= and EnvironmentFile=.

def test_every_transient_unit_gets_the_app_units_sandbox():
    command = in_app_environment(LAYOUT, "/srv/shop/current", "alembic", "upgrade", "head")
    argv = list(command.argv)
    properties = [argv[i + 1] for i, word in enumerate(argv) if word == "-p"]
    hardening = sandbox_properties()
    assert {"NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "CapabilityBoundingSet=",
            "RemoveIPC=yes"} <= set(hardening)
    assert all(p in properties for p in hardening)
    assert "ReadWritePaths=/srv/shop/shared/uploads /srv/shop/shared/logs" in properties
    assert argv[-3:] == ["alembic", "upgrade", "head"]


def test_the_backup_service_is_sandboxed_but_keeps_postgres_shared_memory():
    text = environment(None).get_template("backup.service.j2").render(
        app={"name": "shop"}, backup={"stanza": "shop"})
    assert "ProtectSystem=strict" in text and "NoNewPrivileges=yes" in text and "CapabilityBoundingSet=" in text
    # RemoveIPC would remove the running server's shared memory.
    assert not any(line.startswith("RemoveIPC") for line in text.splitlines())
