"""File storage backends: local filesystem or an S3-compatible bucket."""
from __future__ import annotations

import re
import uuid
from pathlib import Path

from .settings import Settings

KEY_RE = re.compile(r"^[0-9a-f]{32}$")
PROBE_KEY = ".health-probe"


class StorageError(Exception):
    pass


def new_key() -> str:
    return uuid.uuid4().hex


def check_key(key: str) -> str:
    if not KEY_RE.match(key):
        raise KeyError(key)
    return key


class FilesystemStorage:
    name = "filesystem"

    def __init__(self, root: str | Path, base: Path):
        path = Path(root)
        self.root = path if path.is_absolute() else base / path

    def save(self, key: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        target = self.root / check_key(key)
        tmp = target.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(target)

    def read(self, key: str) -> bytes:
        try:
            return (self.root / check_key(key)).read_bytes()
        except FileNotFoundError as exc:
            raise KeyError(key) from exc

    def check(self) -> None:
        """Raise unless a file can be written and removed under the root."""
        self.root.mkdir(parents=True, exist_ok=True)
        probe = self.root / PROBE_KEY
        probe.write_bytes(b"ok")
        probe.unlink()


class S3Storage:
    name = "s3"

    def __init__(self, settings: Settings):
        import boto3
        from botocore.config import Config

        if not settings.s3_bucket:
            raise StorageError("SM_S3_BUCKET is not set")
        self.bucket = settings.s3_bucket
        self.client = boto3.client(
            "s3",
            region_name=settings.s3_region,
            endpoint_url=settings.s3_endpoint_url,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=settings.health_timeout,
                read_timeout=max(5.0, settings.health_timeout),
                retries={"max_attempts": 1, "mode": "standard"},
            ),
        )

    def save(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=data)

    def read(self, key: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=check_key(key))
        except self.client.exceptions.NoSuchKey as exc:
            raise KeyError(key) from exc
        return obj["Body"].read()

    def check(self) -> None:
        self.client.put_object(Bucket=self.bucket, Key=PROBE_KEY, Body=b"ok")
        self.client.delete_object(Bucket=self.bucket, Key=PROBE_KEY)


def make_storage(settings: Settings) -> FilesystemStorage | S3Storage:
    if settings.file_storage_backend == "filesystem":
        return FilesystemStorage(settings.file_storage_path, settings.workspace_root)
    if settings.file_storage_backend == "s3":
        return S3Storage(settings)
    raise StorageError(f"unknown SM_FILE_STORAGE_BACKEND {settings.file_storage_backend!r}")
