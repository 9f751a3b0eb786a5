"""The uploads bucket, set up with boto3 from the machine running smship.

Create or adopt the bucket, turn versioning on, block every form of public
access, and keep a lifecycle rule for replaced versions.  Each step reads
first and changes only what differs, so a second run reports nothing to do.
"""

from __future__ import annotations

from typing import Any

from smship.errors import SmshipError
from smship.inventory import Storage

LIFECYCLE_RULE_ID = "smship-noncurrent-versions"
PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                       "RestrictPublicBuckets": True}


def s3_client(storage: Storage, secrets: dict[str, str]):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", region_name=storage.region, endpoint_url=storage.endpoint_url,
        aws_access_key_id=secrets.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=secrets.get("AWS_SECRET_ACCESS_KEY"),
        verify=str(storage.ca_file) if storage.ca_file else None,
        # Path style works with every S3-compatible store; a dead endpoint fails in seconds.
        config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=30,
                      retries={"max_attempts": 2, "mode": "standard"}))


def explain(exc: Exception, storage: Storage, step: str) -> SmshipError:
    """One line for what went wrong talking to S3."""
    from botocore.exceptions import ClientError, EndpointConnectionError, SSLError

    where = storage.endpoint_url or f"AWS S3 ({storage.region})"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", "")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return SmshipError(f"{where}: bucket {storage.bucket!r}: {step}: access denied ({code}); check "
                               "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the secrets backend")
        return SmshipError(f"{where}: bucket {storage.bucket!r}: {step}: {code} {message}".rstrip())
    if isinstance(exc, SSLError):
        return SmshipError(f"{where}: TLS failed ({exc}); for a private endpoint set storage.ca_file")
    if isinstance(exc, EndpointConnectionError):
        return SmshipError(f"{where}: cannot connect: {exc}")
    return SmshipError(f"{where}: bucket {storage.bucket!r}: {step}: {exc}")


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def lifecycle_rules(existing: list[dict[str, Any]], days: int) -> list[dict[str, Any]]:
    """The bucket's rules with smship's own rule for replaced versions set to ``days``."""
    ours = {"ID": LIFECYCLE_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}
    return [rule for rule in existing if rule.get("ID") != LIFECYCLE_RULE_ID] + [ours]


def ensure_bucket(client, storage: Storage) -> list[str]:
    """Bring the bucket to its desired state; the changes made, in words."""
    from botocore.exceptions import BotoCoreError, ClientError

    changes: list[str] = []
    step = "head"
    try:
        try:
            client.head_bucket(Bucket=storage.bucket)
        except ClientError as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            step = "create"
            options = ({} if storage.region == "us-east-1"
                       else {"CreateBucketConfiguration": {"LocationConstraint": storage.region}})
            client.create_bucket(Bucket=storage.bucket, **options)
            changes.append("created the bucket")
        step = "versioning"
        if storage.versioning and client.get_bucket_versioning(Bucket=storage.bucket).get("Status") != "Enabled":
            client.put_bucket_versioning(Bucket=storage.bucket, VersioningConfiguration={"Status": "Enabled"})
            changes.append("versioning on")
        step = "public access block"
        try:
            current = client.get_public_access_block(Bucket=storage.bucket)["PublicAccessBlockConfiguration"]
        except ClientError as exc:
            if "NoSuchPublicAccessBlockConfiguration" not in _code(exc):
                raise
            current = {}
        if any(not current.get(name) for name in PUBLIC_ACCESS_BLOCK):
            client.put_public_access_block(Bucket=storage.bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
            changes.append("public access blocked")
        if storage.noncurrent_days:
            step = "lifecycle"
            try:
                existing = client.get_bucket_lifecycle_configuration(Bucket=storage.bucket).get("Rules", [])
            except ClientError as exc:
                if _code(exc) != "NoSuchLifecycleConfiguration":
                    raise
                existing = []
            wanted = lifecycle_rules(existing, storage.noncurrent_days)
            ours = [r for r in existing if r.get("ID") == LIFECYCLE_RULE_ID]
            if not ours or ours[0].get("NoncurrentVersionExpiration", {}).get("NoncurrentDays") != storage.noncurrent_days:
                client.put_bucket_lifecycle_configuration(Bucket=storage.bucket,
                                                          LifecycleConfiguration={"Rules": wanted})
                changes.append(f"replaced versions expire after {storage.noncurrent_days} days")
    except (ClientError, BotoCoreError) as exc:
        raise explain(exc, storage, step) from None
    return changes
