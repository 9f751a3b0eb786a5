"""Talking to the smship agent: one JSON request in, one JSON answer out.

The agent (:mod:`smship.remote.agent`) is a standard-library program sent as
``python3 -c`` and run as root; requests travel on stdin so that secrets
and file contents never reach a command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from smship.command import Command
from smship.errors import SmshipError

AGENT_SOURCE = Path(__file__).with_name("agent.py").read_text()
# The db host's backup program (pgBackRest and Postgres), sent the same way.
PG_AGENT_SOURCE = Path(__file__).with_name("pgagent.py").read_text()


def agent_command(request: dict[str, Any], source: str = AGENT_SOURCE) -> Command:
    return Command(("python3", "-c", source), sudo=True, stdin=json.dumps(request).encode(),
                   description=f"smship agent {request['op']}")


def call_agent(fleet, target, request: dict[str, Any], timeout: float = 900,
               source: str = AGENT_SOURCE) -> dict[str, Any]:
    """Run one agent request on ``target``; a failure raises :class:`SmshipError` naming the host."""
    result = fleet.run(target, agent_command(request, source), timeout=timeout)
    if not result.ok:
        raise SmshipError(result.summary())
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise SmshipError(f"{target.name}: the smship agent answered something that is not JSON: "
                          f"{result.stdout[:200]!r}") from None
