"""Secrets kept in AWS: SSM Parameter Store (SecureString) or Secrets Manager.

Only the machine running smship talks to AWS (through boto3 and its usual
credential chain); hosts receive values in their env file like any other
backend. A rotated value keeps its predecessor the way each service does:

aws-ssm             every ``put_parameter`` adds a version; the previous
                    value is the version before the newest, from the
                    parameter's history.
aws-secretsmanager  every ``put_secret_value`` moves the ``AWSCURRENT``
                    label to the new version and ``AWSPREVIOUS`` to the one
                    it replaced.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

from smship.errors import SmshipError
from smship.inventory import Secrets


@contextmanager
def _aws_errors(description: str) -> Iterator[None]:
    """boto3's failures as one line naming the backend (never a value: boto3 does not echo them)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise SmshipError(f"{description}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise SmshipError(f"{description}: {exc}") from None


class _AwsBackend:
    service = ""
    previous_place = ""

    def __init__(self, config: Secrets, description: str):
        self.config, self.description = config, description
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3

            with _aws_errors(self.description):
                self._client = boto3.client(self.service, region_name=self.config.region,
                                            endpoint_url=self.config.endpoint_url)
        return self._client

    def keeps_previous(self, name: str) -> str:
        return self.previous_place

    def check_writable(self, name: str) -> None:
        """AWS says whether we may write only when we do; reading first proves the backend is there."""
        self.read()


class SsmBackend(_AwsBackend):
    service = "ssm"
    previous_place = "the parameter's previous version"

    def __init__(self, config: Secrets):
        super().__init__(config, f"SSM parameters under {config.prefix}")
        self.prefix = config.prefix

    def read(self) -> dict[str, str]:
        values = {}
        with _aws_errors(self.description):
            for page in self.client.get_paginator("get_parameters_by_path").paginate(
                    Path=self.prefix.rstrip("/") or "/", Recursive=False, WithDecryption=True):
                for parameter in page["Parameters"]:
                    values[parameter["Name"].rsplit("/", 1)[-1]] = parameter["Value"]
        return values

    def previous(self, name: str) -> str | None:
        versions = []
        with _aws_errors(f"{self.description}: {name}"):
            try:
                for page in self.client.get_paginator("get_parameter_history").paginate(
                        Name=self.prefix + name, WithDecryption=True):
                    versions += page["Parameters"]
            except self.client.exceptions.ParameterNotFound:
                return None
        versions.sort(key=lambda p: p["Version"])
        return versions[-2]["Value"] if len(versions) >= 2 else None

    def store(self, name: str, value: str) -> None:
        with _aws_errors(f"{self.description}: {name}"):
            self.client.put_parameter(Name=self.prefix + name, Value=value, Type="SecureString", Overwrite=True)


class SecretsManagerBackend(_AwsBackend):
    service = "secretsmanager"
    previous_place = "the version labelled AWSPREVIOUS"

    def __init__(self, config: Secrets):
        super().__init__(config, f"Secrets Manager secret {config.secret_id}")
        self.secret_id = config.secret_id

    def _version(self, stage: str) -> dict[str, str] | None:
        with _aws_errors(self.description):
            try:
                text = self.client.get_secret_value(SecretId=self.secret_id, VersionStage=stage)["SecretString"]
            except self.client.exceptions.ResourceNotFoundException:
                if stage == "AWSPREVIOUS":
                    return None
                raise
        try:
            values = json.loads(text)
        except ValueError:
            values = None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise SmshipError(f"{self.description} ({stage}): the value must be a JSON object of "
                              "NAME: \"value\" strings")
        return values

    def read(self) -> dict[str, str]:
        return self._version("AWSCURRENT") or {}

    def previous(self, name: str) -> str | None:
        return (self._version("AWSPREVIOUS") or {}).get(name)

    def store(self, name: str, value: str) -> None:
        values = {**self.read(), name: value}
        with _aws_errors(self.description):
            self.client.put_secret_value(SecretId=self.secret_id, SecretString=json.dumps(values))
