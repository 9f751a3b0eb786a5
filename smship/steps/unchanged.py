"""An unchanged deploy: what was built is what the hosts run already, so nothing is shipped or restarted.

Release ids are build times, so releases are compared by content: the
manifest's digest of the tree, the wheelhouse's ``deps_id`` and the Python
target (``smship.release.model.content_digest``), which a host's survey
reads from its live release.  The env files count too: a deploy rewrites
them and restarts the units to pick the new values up.

When every chosen host runs a release of the very commit being deployed
(the survey says which), the release is built before the checks and the lock,
and a match ends the deploy there: nothing changes, so nothing needs guarding,
and deploying the live commit again costs a survey, a cached build and two
round trips.  Otherwise the comparison is made under the lock, after the
checks, with each host asked again (a release may have gone live since).
"""

from __future__ import annotations

from smship.context import EnvContext
from smship.engine.resources import HostState
from smship.layout import Layout
from smship.remote import client as agent
from smship.ssh import Fleet, Target
from smship.steps.envfile import settings_plan
from smship.steps.lock import lock_path
from smship.steps.survey import HostSurvey


def content_differs(release, surveyed: dict[str, HostSurvey]) -> list[str]:
    """The hosts whose live release is not ``release``'s content, or whose worker and beat run another;
    all of them for a dirty build (a working tree is deployed when asked for) or a release without a
    digest.

    A host whose live release predates the digest has none, so it differs.
    """
    if release.content is None or release.dirty:
        return sorted(surveyed)
    return sorted(name for name, host in surveyed.items()
                  if host.content != release.content or apart(host))


def apart(host: HostSurvey) -> bool:
    """Whether the host's worker and beat run another release than its live one (a halted deploy
    that could not put them back)."""
    return host.background is not None and host.background != host.current


def worth_building_first(surveyed: dict[str, HostSurvey], commit: str | None) -> bool:
    """Whether every host runs a release of ``commit`` (None: a working tree's build, never)."""
    return commit is not None and all(host.commit == commit for host in surveyed.values())


def settings_differ(fleet: Fleet, targets: dict[str, Target], states: dict[str, HostState]) -> list[str]:
    """The hosts whose env file (or storage CA) the deploy would rewrite; a host that could not say, too."""
    found = fleet.map(lambda target: bool(settings_plan(fleet, target, states[target.name]).changes),
                      [targets[name] for name in states])
    return sorted([*found.failed, *(name for name, differs in found.succeeded.items() if differs)])


def changed_since(fleet: Fleet, targets: dict[str, Target], layout: Layout, surveyed: dict[str, HostSurvey],
                  states: dict[str, HostState]) -> list[str]:
    """The hosts that, now the lock is held, run another release than the survey (taken before the
    lock) found, or whose env file (or storage CA) the deploy would rewrite; a host that could not
    say, too."""
    request = agent.inspect(layout.root, lock_path(layout), timeout=60, content=True,
                            background=layout.background_release)

    def changed(target: Target) -> bool:
        now, then = agent.ask(fleet, target, request), surveyed[target.name]
        return (now.current, now.content, now.background) != (then.current, then.content, then.background)

    found = fleet.map(changed, [targets[name] for name in states])
    moved = sorted([*found.failed, *(name for name, differs in found.succeeded.items() if differs)])
    return moved or settings_differ(fleet, targets, {n: s for n, s in states.items() if n not in moved})


def already_live(ctx: EnvContext, fleet: Fleet, targets: dict[str, Target], release,
                 surveyed: dict[str, HostSurvey], states: dict[str, HostState],
                 locked: bool = True) -> list[str] | None:
    """The live release ids when deploying ``release`` to the hosts of ``surveyed`` would change nothing
    there; None when it would (the reporter says where).  Under the lock (``locked``) each host is asked
    again whether its live release is still the surveyed one; without it, the survey is the answer."""
    changed = content_differs(release, surveyed)
    if not changed:
        changed = (changed_since(fleet, targets, ctx.layout, surveyed, states) if locked
                   else settings_differ(fleet, targets, states))
        if changed:
            ctx.reporter.info(f"release {release.id} is live, but a deploy changes {', '.join(changed)} "
                              "(another release went live since the preflight, or the env file differs)")
    return None if changed else sorted({host.current for host in surveyed.values()})
