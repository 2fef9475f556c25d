"""AWS Secrets Manager and SSM Parameter Store providers through boto3, against moto in server mode.

moto runs as a real HTTP server on 127.0.0.1 (an ephemeral port), so boto3 signs, serialises and
parses exactly as it would against AWS; the providers only get an endpoint_url and dummy credentials.
"""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest

from shipyard.config import Config
from shipyard.errors import SecretsError
from shipyard.secrets.context import SecretsContext
from shipyard.secrets.providers.aws import SecretsManagerProvider, SsmProvider

REGION = "ap-northeast-2"


@pytest.fixture(autouse=True)
def dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)


def test_secrets_manager_round_trip(moto_endpoint: str) -> None:
    p = SecretsManagerProvider("gli/prod/", region=REGION, endpoint_url=moto_endpoint)
    other = SecretsManagerProvider("gli/stg/", region=REGION, endpoint_url=moto_endpoint)
    assert p.get(["DB_PASSWORD"]) == {} and p.list() == []
    p.set("DB_PASSWORD", "pw-from-secrets-manager")
    p.set("DB_PASSWORD", "pw-rotated")                      # an update, not a second secret
    p.set("JWT_SECRET", "jwt-from-secrets-manager")
    other.set("DB_PASSWORD", "stg-pw")
    assert p.get(["DB_PASSWORD", "JWT_SECRET", "NOPE"]) == {"DB_PASSWORD": "pw-rotated",
                                                            "JWT_SECRET": "jwt-from-secrets-manager"}
    assert p.list() == ["DB_PASSWORD", "JWT_SECRET"] and other.list() == ["DB_PASSWORD"]
    assert p.delete("JWT_SECRET") and not p.delete("NOPE")
    assert p.get(["JWT_SECRET"]) == {} and p.list() == ["DB_PASSWORD"]   # in its recovery window: gone
    p.set("JWT_SECRET", "restored")                          # set again restores the deleted secret
    assert p.get(["JWT_SECRET"]) == {"JWT_SECRET": "restored"}


def test_ssm_reads_a_path_recursively_with_decryption(moto_endpoint: str) -> None:
    ssm = boto3.client("ssm", region_name=REGION, endpoint_url=moto_endpoint)
    ssm.put_parameter(Name="/gli/prod/db/PASSWORD", Value="nested-secure", Type="SecureString")
    ssm.put_parameter(Name="/gli/prod/BUCKET", Value="gli-prod-assets", Type="String")
    ssm.put_parameter(Name="/gli/stg/BUCKET", Value="gli-stg-assets", Type="String")
    p = SsmProvider("/gli/prod", region=REGION, endpoint_url=moto_endpoint)
    p.set("JWT_SECRET", "jwt-from-ssm")
    raw = ssm.get_parameter(Name="/gli/prod/JWT_SECRET")["Parameter"]
    assert raw["Type"] == "SecureString" and raw["Value"] != "jwt-from-ssm"   # stored encrypted
    assert p.get(["db_PASSWORD", "BUCKET", "JWT_SECRET"]) == {
        "db_PASSWORD": "nested-secure", "BUCKET": "gli-prod-assets", "JWT_SECRET": "jwt-from-ssm"}
    assert p.list() == ["BUCKET", "JWT_SECRET", "db_PASSWORD"]
    assert p.delete("JWT_SECRET") and not p.delete("JWT_SECRET")
    with pytest.raises(SecretsError, match="cannot be empty"):
        p.set("EMPTY", "")


def test_resolving_a_service_from_aws(moto_endpoint: str, tmp_path: Path) -> None:
    SsmProvider("/gli/prod/", region=REGION, endpoint_url=moto_endpoint).set("JWT_SECRET", "jwt-prod-ssm")
    SecretsManagerProvider("gli/prod/", region=REGION, endpoint_url=moto_endpoint).set("DB_PASSWORD", "sm-pw-9")
    cfg = Config.model_validate({
        "project": "gli", "repos": {"api": {"path": "."}}, "environments": {"prod": {"branch": "main"}},
        "services": {"api": {"repo": "api", "run": "x", "requires_env": ["JWT_SECRET"],
                             "env": {"DATABASE_URL": "pg://app:${secret:DB_PASSWORD}@db/app"}}},
        "secrets": {"provider": "aws-ssm", "also": ["aws-secretsmanager"], "region": REGION,
                    "endpoint_url": moto_endpoint}})
    ctx = SecretsContext(cfg, tmp_path)
    resolved = ctx.resolve("api", "prod")
    assert resolved.environ() == {"JWT_SECRET": "jwt-prod-ssm", "DATABASE_URL": "pg://app:sm-pw-9@db/app"}
    assert resolved.values["JWT_SECRET"].source == "secret:aws-ssm"
    assert ctx.redactor.redact("jwt-prod-ssm sm-pw-9") == "*** ***"


def test_errors_are_one_line_secrets_errors(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(SecretsError, match=r"^aws ssm GetParametersByPath /gli/prod/: cannot reach http://127\.0\.0\.1:\d+/?$"):
        SsmProvider("/gli/prod/", region=REGION, endpoint_url=dead).get(["A"])


def test_aws_refusals_are_mapped(moto_endpoint: str) -> None:
    p = SsmProvider("aws/reserved", region=REGION, endpoint_url=moto_endpoint)   # "aws" names are AWS's own
    with pytest.raises(SecretsError, match=r"^aws ssm PutParameter /aws/reserved/A: AccessDeniedException: "
                                           r"No access to reserved parameter name"):
        p.set("A", "x")
