"""``smship check`` and ``smship logs``."""

from __future__ import annotations

from smship.context import EnvContext
from smship.tasks.base import env_command


@env_command(help={
    "skip-check": "Do not run this check (its name as listed; repeatable, or a comma list).",
    "cert-days": "Fail the tls check when the certificate expires within this many days (default 14).",
}, iterable=["skip_check"])
def check(ctx: EnvContext, skip_check=None, cert_days=14):
    """Run the production checklist against the inventory and the live hosts.

    Each check answers pass, warn or fail with a one-line reason and the fix;
    the exit status is 1 when any check fails. Checks: hosts, environment,
    secret-key, database-url, migrations, frontend, admin, proxy-headers,
    tls, log-format, connection-budget, beat, drain, sm010; the environment's
    checks.skip in the inventory turns some off. Settings are judged under
    the names the app reads (app.settings). Secret values are judged on the
    hosts and never shown. Deploy runs the same checks first.
    """
    from smship.checknames import CHECK_NAMES
    from smship.checklist.model import parse_skips
    from smship.checklist.run import run_checks, show
    from smship.context import open_fleet

    skips = parse_skips(skip_check, CHECK_NAMES)
    ctx.reporter.step(f"checking {ctx.app.name} / {ctx.name}")
    with open_fleet(ctx) as fleet:
        verdicts = run_checks(ctx, fleet, skip=skips, cert_days=int(cert_days))
    return show(ctx, verdicts)


@env_command(help={
    "role": "Only the units of this role (web, worker, beat, db or lb) on the hosts that have it.",
    "since": "From this long ago (10m, 2h, 1d) or a journalctl time ('2026-01-31 12:00', today).",
    "follow": "Keep streaming new lines until interrupted (Ctrl-C).",
    "lines": "At most this many lines per host before following (default: 100, or 10 with --follow; "
             "all lines with --since).",
    "from-collector": "Read every host's lines from the log collector (the logs section) instead of the host; "
                      "without it, only hosts that SSH cannot reach are read there.",
})
def logs(ctx: EnvContext, role=None, since=None, follow=False, lines=None, from_collector=False):
    """Stream the journals of the app's units from every host, each line prefixed with its host.

    Lines are printed as the app wrote them (journalctl -o cat), so JSON log
    lines stay whole JSON after the "HOST | " prefix. Without --follow it
    exits when every host has sent its lines. With a logs section, a host that
    cannot be reached is read from the collector.
    """
    from smship.status.logs import logs as run

    return run(ctx, role=role, since=since, follow=follow, lines=int(lines) if lines is not None else None,
               from_collector=from_collector)
