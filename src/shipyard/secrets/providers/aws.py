"""AWS Secrets Manager and SSM Parameter Store through boto3, one name per secret under a prefix.

Names map to AWS names as `<prefix><NAME>`; the default prefixes keep projects and environments apart
("gli/prod/DB_PASSWORD", "/gli/prod/DB_PASSWORD"). SSM is read by path, recursively, with decryption,
as the TPT pipeline loaded its env file; a nested parameter "/gli/prod/db/PASSWORD" becomes
"db_PASSWORD" (a path is no variable name). boto3 and botocore errors are mapped by shipyard.aws, the one AWS edge,
to one-line SecretsErrors that name the call, the resource and what AWS said.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shipyard.aws import AwsSettings, calling, error_code
from shipyard.aws import client as aws_client
from shipyard.errors import SecretsError
from shipyard.secrets.base import check_name

RECOVERY_DAYS = 7      # `shipyard secrets rm` on Secrets Manager: restorable for a week, like the console


def _local_name(full: str, prefix: str) -> str:
    return full[len(prefix):].strip("/").replace("/", "_")


class SecretsManagerProvider:
    """One Secrets Manager secret (a plain SecretString) per name."""

    label = "aws-secretsmanager"
    writable = True

    def __init__(self, prefix: str, *, region: str | None = None, endpoint_url: str | None = None,
                 client: Any = None) -> None:
        self.prefix, self.endpoint = prefix, endpoint_url
        self._client = client
        self._region = region

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("secretsmanager", AwsSettings(self._region, self.endpoint), error=SecretsError)
        return self._client

    def get(self, names: Iterable[str]) -> dict[str, str]:
        from botocore.exceptions import ClientError

        found: dict[str, str] = {}
        with calling("secretsmanager", "GetSecretValue", self.prefix, error=SecretsError):
            for name in names:
                try:
                    resp = self.client.get_secret_value(SecretId=self.prefix + name)
                except ClientError as exc:
                    # Absent, or scheduled for deletion: both mean "not set" to the resolver.
                    if error_code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
                        continue
                    raise
                if "SecretString" in resp:
                    found[name] = resp["SecretString"]
        return found

    def set(self, name: str, value: str) -> None:
        from botocore.exceptions import ClientError

        secret_id = self.prefix + check_name(name)
        with calling("secretsmanager", "PutSecretValue", secret_id, error=SecretsError):
            try:
                described = self.client.describe_secret(SecretId=secret_id)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                self.client.create_secret(Name=secret_id, SecretString=value)
                return
            if described.get("DeletedDate"):       # `rm`ed, still in its recovery window: bring it back
                self.client.restore_secret(SecretId=secret_id)
            self.client.put_secret_value(SecretId=secret_id, SecretString=value)

    def list(self) -> list[str]:
        names: list[str] = []
        with calling("secretsmanager", "ListSecrets", self.prefix, error=SecretsError):
            pages = self.client.get_paginator("list_secrets").paginate(
                Filters=[{"Key": "name", "Values": [self.prefix]}] if self.prefix else [])
            for page in pages:
                names += [_local_name(s["Name"], self.prefix) for s in page.get("SecretList", [])
                          if s["Name"].startswith(self.prefix) and not s.get("DeletedDate")]
        return sorted(n for n in names if n)

    def delete(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        with calling("secretsmanager", "DeleteSecret", self.prefix + name, error=SecretsError):
            try:
                self.client.delete_secret(SecretId=self.prefix + name, RecoveryWindowInDays=RECOVERY_DAYS)
            except ClientError as exc:
                if error_code(exc) in ("ResourceNotFoundException", "InvalidRequestException"):
                    return False
                raise
        return True


class SsmProvider:
    """SecureString parameters under one path, read recursively with decryption."""

    label = "aws-ssm"
    writable = True

    def __init__(self, path: str, *, region: str | None = None, endpoint_url: str | None = None,
                 client: Any = None) -> None:
        self.path = "/" + path.strip("/") + "/" if path.strip("/") else "/"
        self.endpoint = endpoint_url
        self._client = client
        self._region = region

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws_client("ssm", AwsSettings(self._region, self.endpoint), error=SecretsError)
        return self._client

    def _all(self) -> dict[str, str]:
        out: dict[str, str] = {}
        with calling("ssm", "GetParametersByPath", self.path, error=SecretsError):
            pages = self.client.get_paginator("get_parameters_by_path").paginate(
                Path=self.path, Recursive=True, WithDecryption=True)
            for page in pages:
                for param in page.get("Parameters", []):
                    out[_local_name(param["Name"], self.path)] = param["Value"]
        return out

    def get(self, names: Iterable[str]) -> dict[str, str]:
        wanted = set(names)
        if not wanted:
            return {}
        return {k: v for k, v in self._all().items() if k in wanted}

    def set(self, name: str, value: str) -> None:
        if not value:
            raise SecretsError("aws ssm: a parameter cannot be empty")
        with calling("ssm", "PutParameter", self.path + name, error=SecretsError):
            self.client.put_parameter(Name=self.path + check_name(name), Value=value, Type="SecureString",
                                      Overwrite=True)

    def list(self) -> list[str]:
        return sorted(self._all())

    def delete(self, name: str) -> bool:
        from botocore.exceptions import ClientError

        with calling("ssm", "DeleteParameter", self.path + name, error=SecretsError):
            try:
                self.client.delete_parameter(Name=self.path + name)
            except ClientError as exc:
                if error_code(exc) == "ParameterNotFound":
                    return False
                raise
        return True
