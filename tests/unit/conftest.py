"""Unit tests never read or write this machine's own agent cache (/var/cache/smship-agent): a test that
wants one names its own."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_machine_agent_cache(monkeypatch, tmp_path_factory):
    from smship.remote import agent

    monkeypatch.setattr(agent, "AGENT_CACHE", str(tmp_path_factory.mktemp("agent-cache") / "absent"))
