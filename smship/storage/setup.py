"""``smship storage setup ENV``: the bucket, then the app hosts' settings, then a gated restart.

The settings land in the env file that provisioning renders (``app_settings``),
so a later provision or deploy keeps the app on S3.  Only the env file and
the endpoint's CA are written here, with no handler: the restart goes through
the same health-gated roll as a deploy, each host staying on its live release.
"""

from __future__ import annotations

import time

from smship.context import EnvContext, open_fleet, targets_of
from smship.steps.envfile import settings_files, write_settings
from smship.steps.lock import environment_lock
from smship.steps.survey import survey
from smship.steps.tiers import roll_tiers
from smship.errors import SmshipError
from smship.hostroles import app_hosts
from smship.storage.bucket import ensure_bucket, s3_client


def storage_setup(ctx: EnvContext) -> bool:
    storage, report = ctx.env.storage, ctx.reporter
    if storage is None:
        raise SmshipError(f"{ctx.inventory.path}: environments.{ctx.name}.storage: not set; "
                          "add a storage section (bucket, region, endpoint_url) first")
    secrets = ctx.secrets
    apps = app_hosts(ctx.env.hosts)
    states = {h.name: settings_files(ctx, h, secrets) for h in apps}

    report.step(f"bucket {storage.bucket} at {storage.endpoint_url or 'AWS S3'}")
    began = time.monotonic()
    changes = ensure_bucket(s3_client(storage, secrets), storage)
    report.host("bucket", "changed" if changes else "ok", "; ".join(changes) or "in desired state",
                time.monotonic() - began, bucket=storage.bucket, changes=changes)

    layout = ctx.layout
    with open_fleet(ctx) as fleet:
        targets = {t.name: t for t in targets_of(ctx)}
        surveyed = survey(ctx, fleet, layout, [h.name for h in apps])
        with environment_lock(fleet, [targets[h.name] for h in ctx.env.hosts], layout, f"storage setup {ctx.name}",
                              warn=report.warn) as held:
            report.step(f"S3 settings in the env file of {len(apps)} app host(s)")

            def write(target):
                began = time.monotonic()
                try:
                    written = write_settings(fleet, target, states[target.name])
                except Exception as exc:
                    report.host(target.name, "failed", str(exc), time.monotonic() - began)
                    raise
                report.host(target.name, "changed" if written else "ok",
                            f"wrote {', '.join(written)}" if written else "settings already in place",
                            time.monotonic() - began)
                return written

            written = fleet.map(write, [targets[h.name] for h in apps])
            if not written.ok:
                return False
            restart = [h for h in apps if written[h.name] and surveyed[h.name].current]
            if not restart:
                report.info("no running app needs a restart")
                return True
            failed = roll_tiers(ctx, fleet, targets, restart, {h.name: surveyed[h.name].current for h in restart},
                                "storage setup", held)
            return failed is None
