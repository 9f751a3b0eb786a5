"""The agent's link for the worker and beat: what an activation moves, what it records, what it refuses,
and what prune and inspect make of it, on a release tree under tmp_path.

Restarting the units is the lab's (tests/lab/test_deploy.py); here systemctl's answers are given.
"""

from __future__ import annotations

from smship.layout import Layout
from smship.remote import agent, client


def root_with(tmp_path, *releases: str):
    for release in releases:
        (tmp_path / "releases" / release).mkdir(parents=True)
        (tmp_path / "releases" / release / agent.COMPLETE_MARKER).write_text("")
    return tmp_path


def background_request(root, release: str, moves_current: bool) -> dict:
    link = Layout(app="shop", user="shop", root=str(root)).background_release
    return {"root": str(root), "release": release, "restart": ["shop-worker.service"],
            "background": client.background_link(link, moves_current)}


def test_the_worker_s_link_moves_and_current_only_on_a_host_without_web(tmp_path):
    root = root_with(tmp_path, "r1", "r2")
    agent._switch(str(root), "r1")
    on_web_host = background_request(root, "r2", moves_current=False)
    agent._point(on_web_host, "r2")
    assert agent._linked(str(root / "background")) == "r2"
    assert agent._current(str(root)) == "r1"             # the web tier moves it, once its gate passed
    assert not agent._records(on_web_host)
    alone = background_request(root, "r2", moves_current=True)
    agent._point(alone, "r1")
    assert (agent._linked(str(root / "background")), agent._current(str(root))) == ("r1", "r1")
    assert agent._records(alone) and agent._records({"root": str(root), "release": "r1"})


def test_a_unit_still_running_from_current_is_refused_with_what_to_run(tmp_path, monkeypatch):
    request = background_request(root_with(tmp_path, "r1"), "r1", moves_current=False)
    answers = {"shop-worker.service": str(tmp_path / "current") + "\n"}
    # systemctl show ... UNIT -p WorkingDirectory
    monkeypatch.setattr(agent, "_run", lambda argv, stdin=None: (0, "WorkingDirectory=" + answers[argv[3]], ""))
    refused = agent._background_refusal(request)
    assert refused.startswith(f"shop-worker.service runs from {tmp_path}/current, not {tmp_path}/background")
    assert "run 'smship provision'" in refused
    answers["shop-worker.service"] = str(tmp_path / "background") + "\n"
    assert agent._background_refusal(request) is None


def test_a_refused_activation_touches_nothing(tmp_path, monkeypatch):
    root = root_with(tmp_path, "r1", "r2")
    agent._switch(str(root), "r1")
    monkeypatch.setattr(agent, "_run", lambda argv, stdin=None: (0, f"WorkingDirectory={root}/current\n", ""))
    answer = agent.activate(background_request(root, "r2", moves_current=True))
    assert answer["ok"] is False and answer["untouched"] is True
    assert (agent._current(str(root)), agent._linked(str(root / "background"))) == ("r1", None)


def test_prune_keeps_the_release_the_worker_runs(tmp_path):
    root = root_with(tmp_path, "r1", "r2", "r3")
    agent._switch(str(root), "r3")
    agent._link({"path": str(root / "background"), "target": str(root / "releases" / "r1")})
    removed = agent.prune({"root": str(root), "keep": 1, "protect": [], "links": [str(root / "background")]})
    assert removed == {"removed": ["r2"]}


def test_inspect_says_which_release_the_worker_runs(tmp_path):
    root = root_with(tmp_path, "r1")
    asked = {"root": str(root), "lock": str(tmp_path / "lock"), "background": str(root / "background")}
    assert agent.inspect(asked)["background"] is None
    agent._link({"path": str(root / "background"), "target": str(root / "releases" / "r1")})
    assert agent.inspect(asked)["background"] == "r1"
    assert "background" not in agent.inspect({"root": str(root), "lock": str(tmp_path / "lock")})

