"""``smship storage setup|verify ENV``: the S3 bucket for uploads."""

from __future__ import annotations

from invoke import Collection

from smship.context import EnvContext
from smship.tasks.base import env_command


@env_command(title="storage setup")
def setup(ctx: EnvContext):
    """Create or adopt the uploads bucket and switch the app to it.

    With boto3 from this machine (credentials AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY from the secrets backend): create the bucket named
    in the environment's `storage` section or adopt an existing one, turn
    versioning on, block all public access, and expire replaced versions
    after `noncurrent_days` if set. Then write SM_FILE_STORAGE_BACKEND=s3,
    SM_S3_BUCKET, SM_S3_REGION, SM_S3_ENDPOINT_URL (and AWS_CA_BUNDLE for a
    private CA) into every app host's env file and restart the app through
    the health-gated roll, each host on its live release. Provision and
    deploy keep these settings from then on.
    """
    from smship.storage.setup import storage_setup

    return storage_setup(ctx)


@env_command(title="storage verify")
def verify(ctx: EnvContext):
    """From each app host, write, read back and delete a test object in the bucket.

    Runs as the app user with the host's own env file and the live release's
    boto3, so it proves what the app will see: settings, credentials, DNS,
    TLS and the bucket. One line per host; exit 1 if any host fails.
    """
    from smship.storage.verify import storage_verify

    return storage_verify(ctx)


ns = Collection("storage")
ns.add_task(setup, name="setup")
ns.add_task(verify, name="verify")
