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
    tls, log-format, connection-budget, beat, sm010. Secret values are judged
    on the hosts and never shown. Deploy runs the same checks first.
    """
    from smship.check.checks import NAMES
    from smship.check.model import parse_skips
    from smship.check.run import run_checks, show
    from smship.context import open_fleet

    skips = parse_skips(skip_check, NAMES)
    ctx.reporter.step(f"checking {ctx.app.name} / {ctx.name}")
    with open_fleet(ctx) as fleet:
        verdicts = run_checks(ctx, fleet, skip=skips, cert_days=int(cert_days))
    return show(ctx, verdicts)
