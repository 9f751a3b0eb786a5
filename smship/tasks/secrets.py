"""``smship rotate-secret``."""

from __future__ import annotations

from smship.context import EnvContext
from smship.tasks.base import env_command


@env_command(help={
    "name": "The secret to rotate (default: the key the app reads, app.settings.secret_key, SM_SECRET_KEY "
            "unless declared; the only one rotate-secret changes, since passwords must change in Postgres or "
            "Redis too).",
    "resume": "Generate nothing: bring every host not yet on the backend's current key to it (after a "
              "rotation that left hosts behind, or after you set a new value in the 'env' backend).",
    "undo": "Put the previous key (NAME_PREVIOUS in the backend) back and roll it out to every host.",
})
def rotate_secret(ctx: EnvContext, name=None, resume=False, undo=False):
    """Rotate the app's signing key: a new random key in the secrets backend, on every host, units restarted.

    Rotation invalidates every existing session: signed-in users must sign in
    again. Under the environment's deploy lock: a 384-bit key is generated
    and stored in the backend under the name the app reads it
    (app.settings.secret_key, SM_SECRET_KEY by default), the old one kept
    as NAME_PREVIOUS;
    each app host's env file gets the new line (nothing else changes); web
    hosts restart in deploy's health-gated batches, then workers and beat.
    Keys are never shown: hosts are compared by 12-hex-digit fingerprints.
    If a host is down or fails, the command names which hosts run which key
    and exits 1; --resume finishes, --undo goes back. The 'env' backend
    (CI) cannot be written: set the new value in the CI secret store and run
    --resume.
    """
    from smship.rotate.rotate import rotate_secret as run

    return run(ctx, name=name, resume=resume, undo=undo)
