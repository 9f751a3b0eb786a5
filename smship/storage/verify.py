"""``smship storage verify ENV``: from each app host, with its own env file, a round trip to the bucket.

The probe runs the live release's Python (which has boto3) as the app user
with the app's EnvironmentFile, exactly as the app would: it writes an
object, reads it back, and deletes that version.  One line per host.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from smship.context import EnvContext, open_fleet
from smship.steps.migrate import app_python_program
from smship.errors import SmshipError
from smship.layout import Layout
from smship.hostroles import app_hosts

PROBE = r'''
import json, os, socket, sys, uuid
def done(ok, message):
    print(json.dumps({"ok": ok, "message": message}))
    sys.exit(0)
try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError as exc:
    done(False, "the live release has no boto3: %s" % exc)
bucket = os.environ.get("SM_S3_BUCKET", "")
if os.environ.get("SM_FILE_STORAGE_BACKEND") != "s3" or not bucket:
    done(False, "the env file does not select the s3 upload backend; run 'smship storage setup'")
endpoint = os.environ.get("SM_S3_ENDPOINT_URL") or None
client = boto3.client("s3", region_name=os.environ.get("SM_S3_REGION") or "us-east-1", endpoint_url=endpoint,
                      config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=15,
                                    retries={"max_attempts": 1, "mode": "standard"}))
key = "smship-verify/%s-%s" % (socket.gethostname(), uuid.uuid4().hex)
body = os.urandom(64)
step = "write"
try:
    put = client.put_object(Bucket=bucket, Key=key, Body=body)
    step = "read"
    back = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    step = "delete"
    extra = {"VersionId": put["VersionId"]} if put.get("VersionId") else {}
    client.delete_object(Bucket=bucket, Key=key, **extra)
except ClientError as exc:
    error = exc.response.get("Error", {})
    done(False, "%s s3://%s/%s: %s %s" % (step, bucket, key, error.get("Code"), error.get("Message", "")))
except BotoCoreError as exc:
    done(False, "%s s3://%s at %s: %s" % (step, bucket, endpoint or "AWS", exc))
if back != body:
    done(False, "read back %d bytes that differ from the %d written" % (len(back), len(body)))
done(True, "wrote, read back and deleted s3://%s/%s%s" % (bucket, key, " (version %s)" % put["VersionId"] if put.get("VersionId") else ""))
'''


def probe_command(layout: Layout):
    return app_python_program(layout, layout.current, f"{layout.current}/.venv/bin/python", PROBE,
                              description="S3 round trip as the app")


@dataclass(frozen=True)
class RoundTrip:
    """One host's probe: whether the bucket took, gave back and deleted an object, and what it said."""
    ok: bool
    message: str


def read_round_trip(result) -> RoundTrip:
    """The probe's last line; a probe that could not run (no live release, say) answers with its error."""
    lines = result.stdout.strip().splitlines()
    if result.ok and lines:
        try:
            found = json.loads(lines[-1])
            return RoundTrip(bool(found["ok"]), str(found["message"]))
        except (ValueError, KeyError, TypeError):
            pass
    detail = (result.stderr or result.stdout).strip().splitlines()
    reason = detail[-1] if detail else result.summary()
    if "No such file" in reason or "not found" in reason.lower():
        reason = f"no live release to run the probe with (deploy first): {reason}"
    return RoundTrip(False, reason)


def storage_verify(ctx: EnvContext) -> bool:
    report, layout = ctx.reporter, ctx.layout
    apps = app_hosts(ctx.env.hosts)
    report.step(f"S3 round trip from {len(apps)} app host(s), each with its own env file")
    with open_fleet(ctx, apps) as fleet:
        def probe(target):
            began = time.monotonic()
            answer = read_round_trip(fleet.run(target, probe_command(layout), timeout=120))
            report.host(target.name, "ok" if answer.ok else "failed", answer.message, time.monotonic() - began)
            if not answer.ok:
                raise SmshipError(f"{target.name}: {answer.message}")
            return answer

        answers = fleet.map(probe)
    return answers.ok
