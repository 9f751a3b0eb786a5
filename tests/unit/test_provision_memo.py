"""Provision renders from what each host said last time and confirms it in the same round trip."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from smship.hostos import HostOS
from smship.provision import osmemo
from smship.provision import provision as engine
from smship.remote import client as agent
from smship.ssh import FleetResult, Target

QUESTION = agent.hostos(SimpleNamespace(interpreter="/usr/bin/python3", python=None))
TARGETS = {"web1": Target("web1", "10.0.0.2"), "db1": Target("db1", "10.0.0.3")}


def os_of(host: str, nginx: str = "1.26.3", **changes) -> HostOS:
    fields = {"python_version": "3.13.5", "postgres_clusters": (17,), "nginx_installed": nginx,
              "candidates": {"postgresql": "17+278"}, **changes}
    return HostOS(host=host, distro="debian", version_id="13", codename="trixie", pretty="Debian 13", **fields)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SMSHIP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_an_answer_is_recalled_per_environment_host_and_question(cache):
    osmemo.remember("prod", TARGETS, QUESTION, {"web1": os_of("web1")})
    assert osmemo.recall("prod", list(TARGETS.values()), QUESTION) == {"web1": os_of("web1")}
    assert osmemo.recall("staging", list(TARGETS.values()), QUESTION) == {}
    other = agent.hostos(SimpleNamespace(interpreter="/usr/bin/python3", python=None), packages=("pgbouncer",))
    assert osmemo.recall("prod", list(TARGETS.values()), other) == {}
    moved = {"web1": Target("web1", "10.0.0.9")}
    assert osmemo.recall("prod", list(moved.values()), QUESTION) == {}
    for entry in (cache / "hostos").iterdir():
        entry.write_text("{not json")
    assert osmemo.recall("prod", list(TARGETS.values()), QUESTION) == {}


def test_apt_candidates_count_when_a_guess_is_confirmed():
    guess = os_of("web1")
    assert osmemo.same(guess, os_of("web1"))
    assert not osmemo.same(guess, os_of("web1", candidates={"postgresql": "18+280"}))
    assert not osmemo.same(guess, os_of("web1", nginx=None)) and not osmemo.same(guess, None)


class Fleet:
    def __init__(self):
        self.targets = dict(TARGETS)

    def map(self, work, targets=None):
        results = {}
        for target in targets or self.targets.values():
            try:
                results[target.name] = work(target)
            except Exception as exc:
                results[target.name] = exc
        return FleetResult(results)


def drive(monkeypatch, on_hosts: dict[str, HostOS]):
    """render_and_look on two hosts whose distributions answer ``on_hosts``: what it rendered with,
    and the looks that carried the question."""
    rendered, confirming = [], []

    def desired_states(ctx, fleet, hosts, secrets, project_dir, jinja, known=None, ahead=None):
        known = known if known is not None else dict(on_hosts)   # None: asked, one round trip each
        rendered.append(dict(known))
        return FleetResult({h.name: SimpleNamespace(hostos=known[h.name]) for h in hosts})

    def provision_host(fleet, target, state, check, confirm=None, after=None, ahead=None):
        confirming.append((target.name, confirm))
        if isinstance(on_hosts[target.name], Exception):
            raise on_hosts[target.name]
        return engine.HostOutcome(engine.Plan(), False, on_hosts[target.name] if confirm else None)

    monkeypatch.setattr(engine, "desired_states", desired_states)
    monkeypatch.setattr(engine, "provision_host", provision_host)
    ctx = SimpleNamespace(name="prod", app=SimpleNamespace(interpreter="/usr/bin/python3", python=None),
                          env=SimpleNamespace(db=SimpleNamespace(pooler=None)))
    hosts = [SimpleNamespace(name=n) for n in TARGETS]
    states, looked = engine.render_and_look(ctx, Fleet(), hosts, {}, None, None)
    return rendered, confirming, states, looked


def test_without_a_memo_the_distribution_is_asked_first_and_remembered(monkeypatch):
    answers = {"web1": os_of("web1"), "db1": os_of("db1")}
    rendered, confirming, states, looked = drive(monkeypatch, answers)
    assert rendered == [answers] and confirming == [] and looked is None
    assert osmemo.recall("prod", list(TARGETS.values()), QUESTION) == answers


def test_a_confirmed_memo_renders_and_looks_in_one_round_trip(monkeypatch):
    answers = {"web1": os_of("web1"), "db1": os_of("db1")}
    osmemo.remember("prod", TARGETS, QUESTION, answers)
    rendered, confirming, states, looked = drive(monkeypatch, answers)
    assert rendered == [answers]
    assert confirming == [("web1", QUESTION), ("db1", QUESTION)] and looked.ok
    assert set(looked.succeeded) == set(TARGETS)


def test_a_refuted_memo_renders_again_from_the_hosts_answers_and_looks_again(monkeypatch):
    old = {"web1": os_of("web1"), "db1": os_of("db1")}
    osmemo.remember("prod", TARGETS, QUESTION, old)
    now = {"web1": os_of("web1"), "db1": os_of("db1", postgres_installed=(18,))}
    rendered, confirming, states, looked = drive(monkeypatch, now)
    # Rendered on the guess, then on what the hosts said: the look on the guess is never used.
    assert rendered == [old, now] and looked is None
    assert {n: s.hostos for n, s in states.succeeded.items()} == now
    assert osmemo.recall("prod", list(TARGETS.values()), QUESTION) == now


def test_a_memo_for_only_some_hosts_is_not_used(monkeypatch):
    answers = {"web1": os_of("web1"), "db1": os_of("db1")}
    osmemo.remember("prod", TARGETS, QUESTION, {"web1": answers["web1"]})
    rendered, confirming, _, looked = drive(monkeypatch, answers)
    assert rendered == [answers] and confirming == [] and looked is None


def test_a_host_that_cannot_be_looked_at_keeps_its_failure_and_the_others_their_look(monkeypatch):
    answers = {"web1": os_of("web1"), "db1": os_of("db1")}
    osmemo.remember("prod", TARGETS, QUESTION, answers)
    down = engine.SmshipError("db1 (10.0.0.3:22): connection timed out after 10s")
    rendered, confirming, states, looked = drive(monkeypatch, {"web1": answers["web1"], "db1": down})
    # Neither rendered nor asked again: its failure is its outcome, reported with the others'.
    assert rendered == [answers] and confirming == [("web1", QUESTION), ("db1", QUESTION)]
    assert states.failed == {"db1": down} and set(states.succeeded) == {"web1"}
    assert set(looked.succeeded) == {"web1"} and looked.failed == {"db1": down}
