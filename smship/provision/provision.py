"""Apply roles to hosts: gather facts, diff, change only what differs.

Per host, in parallel: what the host's distribution decides (Postgres and
nginx versions, the app's Python) renders its roles, and every fact the plan
needs is gathered; a host already in its desired state costs nothing more.
Rendered from what the host said last time (:mod:`smship.provision.osmemo`),
both are asked in one round trip; otherwise, or when the host's answer
differs from the memo, in two.  Otherwise missing packages are
installed (and facts gathered again, since packages create files and units),
then one more round trip applies every file, link, ``ensure`` step, handler
and service change in order.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable

from smship import hostos
from smship.hostos import HostOS
from smship.provision import osmemo
from smship.steps.dbrestart import settle_restart
from smship.steps.lock import environment_lock
from smship.command import Command, script
from smship.context import EnvContext
from smship.errors import SmshipError
from smship.inventory import Host
from smship.engine.plan import Plan, apply_request, facts_request, plan
from smship.engine.resources import HostState
from smship.engine.roles import desired_state
from smship.engine.variables import host_variables, roles_of
from smship.hostroles import is_app_host
from smship import upstreamtls
from smship.remote import AgentsAhead
from smship.remote import client as agent
from smship.secrets import backend_for
from smship.ssh import Fleet, FleetResult, Target
from smship.templating import environment


def install_packages_command(packages: list[str]) -> Command:
    return script('export DEBIAN_FRONTEND=noninteractive\n'
                  'apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 || '
                  '{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "$@"; }',
                  args=packages, sudo=True, description=f"apt-get install {' '.join(packages)}")


@dataclass
class HostOutcome:
    plan: Plan
    applied: bool
    hostos: HostOS | None = None           # the host's answer, when asked with its first facts


def provision_host(fleet: Fleet, target: Target, state, check: bool,
                   confirm: agent.Request[HostOS] | None = None,
                   after: agent.Request[HostOS] | None = None, ahead: AgentsAhead | None = None) -> HostOutcome:
    """Plan (and unless ``check``, apply) ``state``. The host's distribution facts come back with
    the first facts when asked by ``confirm``, and with the applying when asked by ``after``,
    in the same round trips; the first facts are asked of the agent ``ahead`` began there, if any."""
    facts = agent.ask(fleet, target, facts_request(state, confirm), ahead)
    host_plan = plan(state, facts)
    if check or host_plan.empty:
        return HostOutcome(host_plan, False, facts.hostos)
    if host_plan.packages:
        result = fleet.run(target, install_packages_command(host_plan.packages), timeout=1800)
        if not result.ok:
            raise SmshipError(result.summary())
        facts = agent.ask(fleet, target, facts_request(state))
        packages = host_plan.packages
        host_plan = plan(state, facts)
        host_plan.packages = packages
    answer = agent.ask(fleet, target, apply_request(state, host_plan, after))
    if not answer.ok:
        raise SmshipError(f"{target.name}: {answer.failed}: {answer.error}")
    return HostOutcome(host_plan, True, answer.hostos)


def diff_texts(plan) -> list[str]:
    """What ``--diff`` shows of a host's plan: unified diffs, and only the summary of secret files."""
    return [change.diff or f"--- {change.target}: {change.summary}"
            for change in plan.changes if change.diff or change.kind == "file"]


def provision(ctx: EnvContext, fleet: Fleet, hosts: list[Host], ahead: AgentsAhead | None = None, *,
              check: bool = False, diff: bool = False, restart_db: bool = False, show=None) -> bool:
    """Provision ``hosts`` through ``fleet`` (its targets are theirs); ``ahead``: their agents, begun
    while this module loaded."""
    project_dir = ctx.inventory.path.parent
    jinja = environment(project_dir)
    secrets = upstream_ca_secrets(ctx, ctx.secrets, check)
    report = ctx.reporter
    # With -o json stdout is the one JSON document: the diffs go inside it,
    # and to stderr for whoever watches the run.
    show = show or (print if report.output != "json" else (lambda text: print(text, file=sys.stderr)))
    report.step(f"{'checking' if check else 'provisioning'} {len(hosts)} host(s) of {ctx.name}")

    roles = {h.name: h.roles for h in hosts}
    question = hostos_question(ctx)
    states, planned = render_and_look(ctx, fleet, hosts, secrets, project_dir, jinja, ahead)

    def work(target: Target, known: HostOutcome | None = None,
             narrow: Callable[[HostState], HostState] | None = None) -> HostOutcome:
        started = time.monotonic()
        try:
            if target.name in states.failed:
                raise states.failed[target.name]
            state = states.succeeded[target.name]
            outcome = known or provision_host(fleet, target, narrow(state) if narrow else state, check,
                                              after=None if narrow else question)
        except Exception as exc:
            report.host(target.name, "failed", str(exc), time.monotonic() - started)
            raise
        lines = outcome.plan.describe()
        if narrow:                   # the host's own line comes with the rest of its changes
            report.info(f"{target.name}: first {'; '.join(lines) or 'nothing'}")
            return outcome
        status = "changed" if lines else "ok"
        verb = "would change" if check else "changed"
        message = f"{verb} {len(lines)}: " + "; ".join(lines) if lines else "in desired state"
        diffs = diff_texts(outcome.plan) if diff else []
        inside = {"diffs": diffs} if diff and report.output == "json" else {}
        report.host(target.name, status, message, time.monotonic() - started,
                    changes=lines, round_trips=fleet.round_trips.get(target.name, 0), **inside)
        for text in diffs:
            show(text)
        if ctx.env.backup and not check and "db" in roles[target.name]:
            said = settle_restart(ctx, fleet, target, restart_db, states.succeeded[target.name].postgres_major)
            if said:
                (report.info if restart_db else report.warn)(said)
                report.data.setdefault("postgres_restart", {})[target.name] = "done" if restart_db else "pending"
        return outcome

    if check:
        outcomes = fleet.map(lambda t: work(t, planned.succeeded.get(t.name))) if planned else fleet.map(work)
    else:
        # A look first, without the lock: hosts already in their desired state need neither (a host that
        # could not be reached is reported as failed either way).
        reachable = [fleet.targets[name] for name in states.succeeded]
        looked = planned or fleet.map(lambda t: provision_host(fleet, t, states.succeeded[t.name], check=True),
                                      reachable)
        if all(name in looked.succeeded and looked.succeeded[name].plan.empty for name in states.succeeded):
            outcomes = fleet.map(lambda t: work(t, looked.succeeded.get(t.name)))
        else:
            # Handlers restart app units: never in the middle of a deploy's roll. The facts are
            # read again under the lock (a deploy may have written an env file since the look).
            # The waves are judged on every host's plan, or not at all (one wave).
            whole = looked if not states.failed else None
            with environment_lock(fleet, reachable, ctx.layout, f"provision {ctx.name}", warn=report.warn):
                outcomes = in_waves(fleet, work, provision_waves(list(fleet.targets.values()), roles, whole,
                                                                 ctx.layout.env_file, ctx.env.web.batch_count),
                                    report)
    # What a host is after applying (new packages, a new cluster) renders the next run's guess.
    osmemo.remember(ctx.name, fleet.targets, question,
                    {name: o.hostos for name, o in outcomes.succeeded.items() if o.applied and o.hostos})
    return outcomes.ok


@dataclass
class Wave:
    """Hosts provisioned together, once every earlier wave succeeded; ``after``: why they wait (None: the first)."""
    targets: list[Target]
    after: str | None = None
    # What a host of this wave is told when an earlier wave failed.
    unless: str = ""
    # Part of each host's desired state, when the rest must wait for a later wave.
    narrow: Callable[[HostState], HostState] | None = None


# The db role's ensure that stops a PgBouncer db.pooler no longer asks for (roles/db.yml).
POOLER_RETIREMENT = "no PgBouncer of smship's"
# The db role's ensure that gives the app's role its SM_DB_PASSWORD (roles/db.yml).
ROLE_PASSWORD = "has the password SM_DB_PASSWORD"


def role_password_only(state: HostState) -> HostState:
    """``state`` reduced to the app role's password: what app hosts leaving PgBouncer need of the db host
    before it may stop PgBouncer (its other changes, pg_hba.conf and the firewall among them, still serve it)."""
    return HostState(roles=state.roles, ensures=[e for e in state.ensures if e.name.endswith(ROLE_PASSWORD)],
                     handlers=state.handlers, handler_wait=state.handler_wait, postgres_major=state.postgres_major,
                     hostos=state.hostos)


def provision_waves(targets: list[Target], roles: dict[str, list[str]], looked: FleetResult[HostOutcome] | None,
                    env_file: str, web_batch=lambda hosts: hosts) -> list[Wave]:
    """All hosts at once; or the db hosts first when they change and a running app's env file changes too;
    and web hosts whose slots switch, in the deploy's batches (``web_batch``: hosts -> one batch's size).

    A new SM_DB_PASSWORD or a pooler reaches the app hosts as an env file whose
    change restarts their units: they must find the db host (its password,
    PgBouncer) already there.  A pooler taken out is the other way round: the
    db host stops PgBouncer only after the app hosts moved to Postgres' own
    port; should SM_DB_PASSWORD change with it, the db host's role takes the
    new password in a wave of its own first.  A web host's switch runs its
    new slot beside the serving one for a moment: the connection budget counts one batch of them,
    and a change the new slots fail on stops at the first batch, as a deploy's.
    """
    if looked is None:
        return [Wave(targets)]
    plans = {name: outcome.plan for name, outcome in looked.succeeded.items()}
    db = [t for t in targets if "db" in roles[t.name]]
    rest = [t for t in targets if "db" not in roles[t.name]]
    db_changes = any(not plans[t.name].empty for t in db if t.name in plans)
    rewrites = any(change.kind == "file" and change.target == env_file and not change.summary.startswith("create")
                   for t in rest if t.name in plans for change in plans[t.name].changes)

    def db_ensures(matches) -> bool:
        """Whether a db host's plan runs an ensure step whose name ``matches``."""
        return any(change.kind == "ensure" and matches(change.target)
                   for t in db if t.name in plans for change in plans[t.name].changes)

    last = []
    if db and rest and rewrites and db_ensures(lambda name: name.startswith(POOLER_RETIREMENT)):
        waves = [Wave(rest)]
        if db_ensures(lambda name: name.endswith(ROLE_PASSWORD)):
            waves = [Wave(db, narrow=role_password_only),
                     Wave(rest, f"then {len(rest)} host(s) whose app moves to Postgres' own port, on the new password",
                          "this host's app would restart on a password its role does not have")]
        last = [Wave(db, "then the db host, whose PgBouncer no app host uses any longer",
                     "its PgBouncer stays while an app host may still use it")]
    elif db and rest and db_changes and rewrites:
        waves = [Wave(db), Wave(rest, f"then {len(rest)} host(s) whose app restarts on the db host's new settings",
                                "this host's app would restart on settings that host did not take")]
    else:
        waves = [Wave(targets)]
    switching = [t for t in waves[-1].targets if t.name in plans and plans[t.name].restarts_web_slots]
    size = web_batch(len(switching)) if switching else 1
    later = [switching[i:i + size] for i in range(size, len(switching), size)]
    waiting = {t.name for batch in later for t in batch}
    waves[-1].targets = [t for t in waves[-1].targets if t.name not in waiting]
    for number, batch in enumerate(later, 2):
        waves.append(Wave(batch, f"then web batch {number}/{len(later) + 1}: {', '.join(t.name for t in batch)}",
                          "web slots switch batch by batch, as in a deploy, halting at a failed batch"))
    return waves + last


def in_waves(fleet: Fleet, work, waves: list[Wave], report) -> FleetResult[HostOutcome]:
    """``work`` on each wave in turn; a wave with a failed host stops the ones after it."""
    results: dict[str, HostOutcome | Exception] = {}
    for wave in waves:
        failed = sorted(FleetResult(results).failed)
        if failed:
            for target in wave.targets:
                if target.name in results:      # reported in its earlier wave
                    continue
                problem = SmshipError(f"not provisioned: {', '.join(failed)} failed first, and {wave.unless}")
                report.host(target.name, "failed", str(problem))
                results[target.name] = problem
            continue
        if wave.after:
            report.info(wave.after)
        results.update(fleet.map(partial(work, narrow=wave.narrow) if wave.narrow else work, wave.targets,
                                 waiting=lambda hosts, seconds: report.waiting("provision", hosts, seconds)))
    return FleetResult(results)


def upstream_ca_secrets(ctx: EnvContext, secrets: dict[str, str], check: bool) -> dict[str, str]:
    """``secrets`` with the environment's CA key when the fleet has an lb or ships its logs (made once, then kept).

    ``--check`` changes nothing, the secrets backend included: it plans with a
    key that lives only in memory.
    """
    if not (ctx.env.hosts_with("lb") or ctx.env.logs) or upstreamtls.CA_KEY in secrets:
        return secrets
    if check:
        return {**secrets, upstreamtls.CA_KEY: upstreamtls.new_key()}
    return upstreamtls.ensure_ca_key(backend_for(ctx.env.secrets, ctx.app.settings.backend_names()), secrets)


def hostos_question(ctx: EnvContext) -> agent.Request[HostOS]:
    return agent.hostos(ctx.app, packages=("pgbouncer",) if ctx.env.db.pooler else ())


def render_and_look(ctx: EnvContext, fleet: Fleet, hosts: list[Host], secrets: dict[str, str], project_dir,
                    jinja, ahead: AgentsAhead | None = None
                    ) -> tuple[FleetResult[HostState], FleetResult[HostOutcome] | None]:
    """Each host's desired state (or why it has none), and when every host that answered had the
    distribution remembered, the look at each of them (one round trip per host); else the look is None.
    The first question to each host goes to the agent ``ahead`` began there, if any.
    """
    question = hostos_question(ctx)
    asked = [fleet.targets[h.name] for h in hosts]
    guessed = osmemo.recall(ctx.name, asked, question)
    fresh = None
    if len(guessed) == len(hosts):
        try:
            states = desired_states(ctx, fleet, hosts, secrets, project_dir, jinja, guessed)
        except SmshipError:
            states = None            # refused on the memo: the hosts' own answers decide
        if states is not None:
            looked = fleet.map(lambda t: provision_host(fleet, t, states.succeeded[t.name], True, question,
                                                        ahead=ahead))
            answers = {name: outcome.hostos for name, outcome in looked.succeeded.items()}
            if all(osmemo.same(guessed[name], answers[name]) for name in answers):
                # A host that could not be looked at is not asked again: its failure is its outcome.
                return FleetResult({h.name: looked.failed.get(h.name, states[h.name]) for h in hosts}), looked
            fresh = {**answers, **looked.failed}
    states = desired_states(ctx, fleet, hosts, secrets, project_dir, jinja, fresh, ahead)
    osmemo.remember(ctx.name, fleet.targets, question,
                    {name: state.hostos for name, state in states.succeeded.items()})
    return states, None


def desired_states(ctx: EnvContext, fleet: Fleet, hosts: list[Host], secrets: dict[str, str], project_dir,
                   jinja, known: dict[str, HostOS | Exception] | None = None,
                   ahead: AgentsAhead | None = None) -> FleetResult[HostState]:
    """Each host's desired state, rendered with what its distribution has: ``known`` (a host's facts, or
    why it could not give them), else asked (one round trip per host).

    A fleet whose app hosts would run different Python versions is refused here,
    before any host changes: one release's wheels fit one interpreter.
    """
    given = dict(known or {})
    unknown = [fleet.targets[h.name] for h in hosts if h.name not in given]
    if unknown:
        given.update(agent.ask_all(fleet, hostos_question(ctx), unknown, ahead=ahead))
    facts = FleetResult({h.name: given[h.name] for h in hosts})
    known = facts.succeeded
    app_facts = {h.name: known[h.name] for h in hosts if h.name in known and is_app_host(h)}
    hostos.require_python_available(ctx.app, app_facts)
    hostos.require_pooler_available(ctx.env, {h.name: known[h.name] for h in hosts if h.name in known})
    hostos.require_one_python(ctx.app, {name: hostos.planned_python(ctx.app, f) for name, f in app_facts.items()})
    states: dict[str, HostState | Exception] = {}
    for h in hosts:
        if h.name not in known:          # unreachable: reported with the other hosts' outcomes
            states[h.name] = facts.failed[h.name]
            continue
        variables = host_variables(ctx, h, secrets, known[h.name])
        states[h.name] = desired_state(roles_of(ctx.env, h), variables, project_dir, jinja)
        states[h.name].postgres_major = variables["postgres_major"]
        states[h.name].hostos = known[h.name]
    return FleetResult(states)
