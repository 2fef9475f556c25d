"""`shipyard aws policy SERVICE`: the IAM policy a configuration needs, exact for what the config names,
valid for IAM (moto's IAM parses the document as AWS does on CreatePolicy), and clear on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from shipyard.aws.policy import Scope, Statement, merge, policy
from shipyard.config import load_config
from shipyard.engine.settings import service_settings

GLI = """\
project: gli
repos: {api: {path: ../api}}
environments:
  stg: {branch: stg}
  prod: {branch: main, promote_from: stg}
secrets: {provider: aws-secretsmanager, also: [aws-ssm, env], region: ap-northeast-2}
metrics:
  cw: {type: cloudwatch, region: ap-northeast-2}
services:
  api:
    repo: api
    run: serve --port {port}
    deploy:
      metrics: cw
      alarms: [{cloudwatch: api-5xx-high}]
  worker:
    repo: api
    run: work
"""


def _project(tmp_path: Path, text: str = GLI) -> Path:
    (tmp_path / "shipyard.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def _policy(root: Path, service: str, envs: list[str], scope: Scope) -> dict:  # type: ignore[type-arg]
    cfg = load_config(root / "shipyard.yaml")
    return policy(cfg, [service_settings(cfg, root, service, e) for e in envs], scope)


def test_the_policy_names_exactly_what_the_config_reaches(tmp_path: Path) -> None:
    doc = _policy(_project(tmp_path), "api", ["stg", "prod"], Scope("123456789012"))
    by_sid = {st["Sid"]: st for st in doc["Statement"]}
    assert doc["Version"] == "2012-10-17"
    assert set(by_sid) == {"SecretsManagerRead", "SsmParametersRead", "CloudWatchMetricsRead", "CloudWatchAlarmsRead"}
    assert by_sid["SecretsManagerRead"]["Action"] == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
    assert by_sid["SecretsManagerRead"]["Resource"] == [
        "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:gli/prod/*",
        "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:gli/stg/*"]
    assert by_sid["SsmParametersRead"]["Resource"] == [
        "arn:aws:ssm:ap-northeast-2:123456789012:parameter/gli/prod",
        "arn:aws:ssm:ap-northeast-2:123456789012:parameter/gli/prod/*",
        "arn:aws:ssm:ap-northeast-2:123456789012:parameter/gli/stg",
        "arn:aws:ssm:ap-northeast-2:123456789012:parameter/gli/stg/*"]
    assert by_sid["CloudWatchMetricsRead"] == {"Sid": "CloudWatchMetricsRead", "Effect": "Allow",
                                               "Action": ["cloudwatch:GetMetricData"], "Resource": "*"}
    # one alarm, both envs: one resource, the region of the metric source it inherits
    assert by_sid["CloudWatchAlarmsRead"]["Resource"] == ("arn:aws:cloudwatch:ap-northeast-2:123456789012:alarm:"
                                                          "api-5xx-high")
    assert not any("Put" in a or "Create" in a or "Delete" in a for st in doc["Statement"] for a in st["Action"])


def test_a_service_without_aws_parts_only_reads_its_secrets(tmp_path: Path) -> None:
    doc = _policy(_project(tmp_path), "worker", ["prod"], Scope())
    assert [st["Sid"] for st in doc["Statement"]] == ["SecretsManagerRead", "SsmParametersRead"]
    local = _policy(_project(tmp_path, GLI.replace("provider: aws-secretsmanager, also: [aws-ssm, env]",
                                                   "provider: local")), "worker", ["prod"], Scope())
    assert local["Statement"] == []


def test_merge_joins_resources_of_the_same_need() -> None:
    got = merge([Statement("A", ("s3:GetObject",), ("arn:1",)), Statement("A", ("s3:GetObject",), ("arn:2", "arn:1")),
                 Statement("B", ("s3:PutObject",))])
    assert got == [Statement("A", ("s3:GetObject",), ("arn:1", "arn:2")), Statement("B", ("s3:PutObject",), ("*",))]


def test_iam_accepts_the_document(tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(key, value)
    doc = _policy(_project(tmp_path), "api", ["stg", "prod"], Scope("123456789012"))
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_endpoint)
    made = iam.create_policy(PolicyName="shipyard-gli-api", PolicyDocument=json.dumps(doc))
    version = iam.get_policy_version(PolicyArn=made["Policy"]["Arn"], VersionId=made["Policy"]["DefaultVersionId"])
    stored = version["PolicyVersion"]["Document"]
    assert (json.loads(stored) if isinstance(stored, str) else stored) == doc


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shipyard.cli.main", *args], cwd=root, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1", "CI": "true"})


def test_the_command_prints_the_policy_and_refuses_bad_input(tmp_path: Path) -> None:
    root = _project(tmp_path)
    res = _cli(root, "aws", "policy", "api", "--env", "prod", "--account", "123456789012")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc == _policy(root, "api", ["prod"], Scope("123456789012"))
    bad = _cli(root, "aws", "policy", "api", "--account", "12")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --account '12': an AWS account id is 12 digits"
    unknown = _cli(root, "aws", "policy", "nope")
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith("error: unknown service 'nope'")
