"""`shipyard aws policy` for ECR: the build image's tags (and its push) on the one repository, and the
housekeeping statements the ECS target adds with its `ecr` policy; moto's IAM accepts both documents."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

from shipyard.aws.policy import Scope, ecr_prune_statements, ecr_statements, merge, policy
from shipyard.config import load_config
from shipyard.config.ecr import EcrPolicy
from shipyard.engine.settings import service_settings

CONFIG = """\
project: gli
repos: {api: {path: ../api}}
environments:
  prod: {branch: main}
services:
  api:
    repo: api
    run: serve --port {port}
    build: make push
    image: {repository: gli/api, region: ap-northeast-2}
"""


def _doc(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    (tmp_path / "shipyard.yaml").write_text(CONFIG, encoding="utf-8")
    cfg = load_config(tmp_path / "shipyard.yaml")
    return policy(cfg, [service_settings(cfg, tmp_path, "api", "prod")], Scope("123456789012"))


def test_the_build_image_needs_its_repository_and_a_login(tmp_path: Path) -> None:
    by_sid = {st["Sid"]: st for st in _doc(tmp_path)["Statement"]}
    repo = "arn:aws:ecr:ap-northeast-2:123456789012:repository/gli/api"
    assert by_sid["EcrImageTags"] == {"Sid": "EcrImageTags", "Effect": "Allow",
                                      "Action": ["ecr:BatchGetImage", "ecr:PutImage"], "Resource": repo}
    assert by_sid["EcrLogin"]["Action"] == ["ecr:GetAuthorizationToken"] and by_sid["EcrLogin"]["Resource"] == "*"
    assert by_sid["EcrBuildPush"]["Resource"] == repo and "ecr:CompleteLayerUpload" in by_sid["EcrBuildPush"]["Action"]


def test_housekeeping_names_the_repositories_and_clusters() -> None:
    scope = Scope("123456789012", "us-east-1")
    statements = {st.sid: st.to_dict() for st in ecr_prune_statements(["api", "ws"], ["arn:x:cluster/gli"], scope)}
    assert statements["EcrPrune"]["Action"] == ["ecr:BatchDeleteImage", "ecr:DescribeImages"]
    assert statements["EcrPrune"]["Resource"] == ["arn:aws:ecr:us-east-1:123456789012:repository/api",
                                                  "arn:aws:ecr:us-east-1:123456789012:repository/ws"]
    assert statements["EcrPruneServices"]["Resource"] == "arn:aws:ecs:us-east-1:123456789012:service/gli/*"
    assert statements["EcrPruneTaskDefinitions"]["Resource"] == "*"
    every = {st.sid for st in ecr_prune_statements(["api"], [], scope)}
    assert every == {"EcrPrune", "EcrPruneTaskDefinitions", "EcrPruneAllClusters"}


def test_a_target_with_an_ecr_policy_prunes_the_repository_of_its_image() -> None:
    # The shape the ECS target's config has (cluster, image template, region) with `ecr` embedded.
    target = SimpleNamespace(cluster="gli", image="{registry}/gli/api:{sha}", region="ap-northeast-2",
                             ecr=EcrPolicy(keep=10))
    settings = SimpleNamespace(image=None, target=target)
    statements = {st.sid: st for st in ecr_statements(settings, Scope("123456789012"))}
    assert statements["EcrPrune"].resources == ("arn:aws:ecr:ap-northeast-2:123456789012:repository/gli/api",)
    named = SimpleNamespace(cluster="gli", image="{registry}/gli/api:{sha}", region=None,
                            ecr=EcrPolicy(repositories=["gli/api", "gli/ws"]))
    assert len(ecr_statements(SimpleNamespace(image=None, target=named), Scope())[0].resources) == 2


def test_iam_accepts_the_documents(tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(key, value)
    prune_doc = {"Version": "2012-10-17", "Statement": [st.to_dict() for st in merge(
        ecr_prune_statements(["api"], ["gli"], Scope("123456789012", "us-east-1")))]}
    iam = boto3.client("iam", region_name="us-east-1", endpoint_url=moto_endpoint)
    for name, doc in (("build", _doc(tmp_path)), ("prune", prune_doc)):
        made = iam.create_policy(PolicyName=f"shipyard-ecr-{name}", PolicyDocument=json.dumps(doc))
        version = iam.get_policy_version(PolicyArn=made["Policy"]["Arn"],
                                         VersionId=made["Policy"]["DefaultVersionId"])
        stored = version["PolicyVersion"]["Document"]
        assert (json.loads(stored) if isinstance(stored, str) else stored) == doc
