"""An unchanged deploy: what was built is what the hosts run already, so nothing is shipped or restarted.

Release ids are build times, so releases are compared by content: the
manifest's digest of the tree, the wheelhouse's ``deps_id`` and the Python
target (``smship.release.model.content_digest``), which a host's survey
reads from its live release.  The env files count too: a deploy rewrites
them and restarts the units to pick the new values up.
"""

from __future__ import annotations

from smship.context import EnvContext
from smship.engine.resources import HostState
from smship.ssh import Fleet, Target
from smship.steps.envfile import settings_plan
from smship.steps.survey import HostSurvey


def content_differs(release, surveyed: dict[str, HostSurvey]) -> list[str]:
    """The hosts whose live release is not ``release``'s content; all of them for a dirty build (a
    working tree is deployed when asked for) or a release without a digest.

    A host whose live release predates the digest has none, so it differs.
    """
    if release.content is None or release.dirty:
        return sorted(surveyed)
    return sorted(name for name, host in surveyed.items() if host.content != release.content)


def settings_differ(fleet: Fleet, targets: dict[str, Target], states: dict[str, HostState]) -> list[str]:
    """The hosts whose env file (or storage CA) the deploy would rewrite; a host that could not say, too."""
    plans = fleet.map(lambda t: settings_plan(fleet, t, states[t.name]), [targets[name] for name in states])
    return sorted([*plans.failed, *(name for name, found in plans.succeeded.items() if found.changes)])


def already_live(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], release,
                 surveyed: dict[str, HostSurvey], states: dict[str, HostState]) -> list[str] | None:
    """The live release ids when deploying ``release`` to the hosts of ``surveyed`` would change nothing
    there; None when it would (the reporter says where)."""
    changed = content_differs(release, surveyed)
    if not changed:
        changed = settings_differ(fleet, targets, states)
        if changed:
            ctx.reporter.info(f"release {release.id} is live, the env file changes on: {', '.join(changed)}")
    return None if changed else sorted({host.current for host in surveyed.values()})
