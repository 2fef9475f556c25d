"""ECR against moto in server mode: retention never deletes an image a live or warm ECS service uses
(real cluster, services and task definitions in moto, referenced by tag and by digest), deletes in
batches of 100 with each refused image on its own line, and the CLI; the build image's tags added
registry-side (BatchGetImage + PutImage of the same manifest) and read back.

What is checked against moto's state: the images (DescribeImages after the prune or the tagging), the
services' deployments, desired counts and tags as DescribeServices reports them. moto runs no tasks, so a
"live" service here is one whose desiredCount is above 0; that is the boundary shipyard.ecr.inuse reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from aws_world import MEDIA, manifest, next_second
from shipyard.aws import AwsSettings
from shipyard.ecr.prune import delete_images, prune
from shipyard.ecr.retention import Image
from shipyard.ecr.tags import Tagger, plan_tags
from shipyard.errors import StageFailed, TargetError
from shipyard.testing.cli import run_cli

pytestmark = pytest.mark.timeout(120)
REGION = "us-east-1"
@dataclass
class Aws:
    endpoint: str
    ecr: Any
    ecs: Any

    def repo(self, name: str, *, immutable: bool = False) -> str:
        made = self.ecr.create_repository(repositoryName=name,
                                          imageTagMutability="IMMUTABLE" if immutable else "MUTABLE")
        return str(made["repository"]["repositoryUri"])

    def push(self, repo: str, n: int, tag: str | None = None) -> str:
        kw = {"imageTag": tag} if tag else {}
        out = self.ecr.put_image(repositoryName=repo, imageManifest=manifest(n), imageManifestMediaType=MEDIA, **kw)
        return str(out["image"]["imageId"]["imageDigest"])

    def images(self, repo: str) -> dict[str, list[str]]:
        pages = self.ecr.get_paginator("describe_images").paginate(repositoryName=repo)
        return {d["imageDigest"]: sorted(d.get("imageTags") or []) for p in pages for d in p["imageDetails"]}

    def service(self, cluster: str, name: str, image: str, *, desired: int, tags: dict[str, str] | None = None) -> str:
        td = self.ecs.register_task_definition(
            family=name, containerDefinitions=[{"name": "app", "image": image, "memory": 128},
                                               {"name": "sidecar", "image": "public.ecr.aws/nginx/nginx:1",
                                                "memory": 64}])["taskDefinition"]["taskDefinitionArn"]
        self.ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=td, desiredCount=desired,
                                tags=[{"key": k, "value": v} for k, v in (tags or {}).items()])
        return str(td)


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    kw = {"region_name": REGION, "endpoint_url": moto_endpoint}
    made = Aws(moto_endpoint, boto3.client("ecr", **kw), boto3.client("ecs", **kw))
    yield made
    for repo in made.ecr.describe_repositories()["repositories"]:      # the moto server is per module
        made.ecr.delete_repository(repositoryName=repo["repositoryName"], force=True)
    for arn in made.ecs.list_clusters()["clusterArns"]:
        for svc in made.ecs.list_services(cluster=arn)["serviceArns"]:
            made.ecs.delete_service(cluster=arn, service=svc, force=True)
        made.ecs.delete_cluster(cluster=arn)


async def test_prune_keeps_the_newest_and_every_image_a_live_or_warm_service_uses(aws: Aws) -> None:
    uri = aws.repo("gli/api")
    digests = [aws.push("gli/api", n, f"t{n}") for n in range(7)]
    next_second()           # ECR keeps push times in seconds: the two newest are pushed a second later
    digests += [aws.push("gli/api", 7, "t7"), aws.push("gli/api", 8)]                       # one untagged
    aws.ecs.create_cluster(clusterName="gli")
    aws.ecs.create_cluster(clusterName="elsewhere")
    aws.service("gli", "api", f"{uri}:t1", desired=2)                              # live, by tag
    aws.service("gli", "api-green", f"{uri}@{digests[2]}", desired=0,              # warm, by digest, at 0
                tags={"shipyard:warm-until": str(time.time() + 600)})
    aws.service("gli", "api-old", f"{uri}:t3", desired=0,                          # warm no longer
                tags={"shipyard:warm-until": str(time.time() - 600)})
    aws.service("gli", "api-idle", f"{uri}:t4", desired=0)                         # scaled to 0, not warm
    aws.service("elsewhere", "api-other", f"{uri}:t5", desired=1)                  # not a cluster we read
    settings = AwsSettings(REGION, aws.endpoint)

    [dry] = await prune(["gli/api"], 2, ["gli"], dry_run=True, settings=settings)
    assert dry.deleted == [] and len(aws.images("gli/api")) == 9                  # a dry run changes nothing
    reasons = {d.image.digest: d.reason for d in dry.plan.kept}
    assert set(reasons) == {digests[8], digests[7], digests[1], digests[2]}
    assert reasons[digests[1]].startswith("in use: service api, PRIMARY deployment, api:1 container app")
    assert "warm until" in reasons[digests[2]] and reasons[digests[2]].endswith("(by digest)")

    [done] = await prune(["gli/api"], 2, ["gli"], settings=settings)
    left = aws.images("gli/api")
    assert set(left) == {digests[8], digests[7], digests[1], digests[2]}
    assert left[digests[8]] == [] and left[digests[1]] == ["t1"]
    assert sorted(done.deleted) == sorted(digests[n] for n in (0, 3, 4, 5, 6)) and done.failures == []

    # Every cluster of the region (no --cluster): the other cluster's live service now protects t5, which
    # is gone already; a second run deletes nothing more.
    [again] = await prune(["gli/api"], 2, None, settings=settings)
    assert again.deleted == [] and set(aws.images("gli/api")) == set(left)


async def test_a_misspelt_cluster_is_an_error_not_an_empty_in_use_set(aws: Aws) -> None:
    aws.repo("api")
    aws.push("api", 0, "a")
    aws.push("api", 1, "b")
    with pytest.raises(TargetError, match=r"^aws ecs DescribeClusters glii: no such active cluster"):
        await prune(["api"], 1, ["glii"], settings=AwsSettings(REGION, aws.endpoint))
    assert len(aws.images("api")) == 2
    with pytest.raises(TargetError, match=r"^aws ecr DescribeImages nope: RepositoryNotFoundException"):
        await prune(["nope"], 1, [], settings=AwsSettings(REGION, aws.endpoint))


async def test_deletes_go_in_batches_of_100_and_a_refused_image_is_one_line(aws: Aws) -> None:
    aws.repo("bulk")
    for n in range(230):
        aws.push("bulk", n, f"b{n}")
    [done] = await prune(["bulk"], 5, [], settings=AwsSettings(REGION, aws.endpoint))
    assert len(done.deleted) == 225 and len(aws.images("bulk")) == 5 and done.failures == []
    # An image that went between the listing and the delete: ECR refuses it in the answer, not the call.
    gone = Image(f"sha256:{'e' * 64}", done.plan.decisions[0].image.pushed_at, ("ghost",))
    kept = [d.image for d in done.plan.kept][:1]
    ecr = boto3.client("ecr", region_name=REGION, endpoint_url=aws.endpoint)
    deleted, failures = delete_images(ecr, "bulk", [gone, *kept])
    assert deleted == [kept[0].digest]
    assert failures == [f"bulk {gone.digest[:19]} (ghost): ImageNotFound: Requested image not found"]


def test_the_cli_prints_the_plan_as_json_and_deletes(aws: Aws, tmp_path: Path) -> None:
    uri = aws.repo("web")
    digests = [aws.push("web", n, f"w{n}") for n in range(3)]
    next_second()
    digests.append(aws.push("web", 3, "w3"))
    aws.ecs.create_cluster(clusterName="c1")
    aws.service("c1", "web", f"{uri}:w0", desired=1)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SHIPYARD_"))},
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "NO_COLOR": "1", "CI": "true"}
    args = ("ecr", "prune", "--repository", "web", "--keep", "1", "--cluster", "c1", "--region", REGION,
            "--endpoint-url", aws.endpoint)
    res = run_cli(tmp_path, *args, "--dry-run", "--json", env=env)
    assert res.returncode == 0, str(res)
    [result] = res.json()["results"]
    assert result["dry_run"] and result["deleted"] == [] and len(aws.images("web")) == 4
    assert {i["digest"] for i in result["images"] if not i["keep"]} == set(digests[1:3])
    res = run_cli(tmp_path, *args, env=env)
    assert res.returncode == 0, str(res)
    assert set(aws.images("web")) == {digests[0], digests[3]}
    assert "web: 4 images, kept 2, deleted 2 of 2" in res.stdout
    bad = run_cli(tmp_path, "ecr", "prune", "--repository", "Web!", "--region", REGION, env=env)
    assert bad.returncode == 2 and "Traceback" not in str(bad) and len(bad.error_lines) == 1, str(bad)


def test_tags_are_added_moved_and_idempotent_on_retry(aws: Aws) -> None:
    sha, old_sha = "a1" * 20, "b2" * 20
    aws.repo("api")
    older = aws.push("api", 1, old_sha)
    aws.ecr.put_image(repositoryName="api", imageManifest=manifest(1), imageManifestMediaType=MEDIA,
                      imageTag="latest")
    built = aws.push("api", 2, sha)
    tagger = Tagger(aws.ecr, "api")
    record = tagger.apply(sha, plan_tags(["sha", "semver", "latest"], sha, "1.4.0"))
    assert record["digest"] == built
    assert record["tags"] == [{"tag": sha, "action": "pushed by build"}, {"tag": "1.4.0", "action": "added"},
                              {"tag": "latest", "action": "moved", "from": older}]
    images = aws.images("api")
    assert images[built] == sorted([sha, "1.4.0", "latest"]) and images[older] == [old_sha]
    # The manifest is the same bytes under every tag (so the same digest).
    got = aws.ecr.batch_get_image(repositoryName="api", imageIds=[{"imageTag": "1.4.0"}])["images"][0]
    assert got["imageManifest"] == manifest(2)
    again = tagger.apply(sha, plan_tags(["sha", "semver", "latest"], sha, "1.4.0"))
    assert [t["action"] for t in again["tags"]] == ["pushed by build", "already", "already"]
    # ECR's own ImageAlreadyExistsException for a tag on this image already: not an error.
    image = tagger.get(sha)
    assert image is not None and tagger.put(image, "latest") is False


def test_a_missing_sha_and_an_immutable_tag_held_elsewhere_fail_in_one_line(aws: Aws) -> None:
    sha = "c3" * 20
    aws.repo("locked", immutable=True)
    with pytest.raises(StageFailed, match=rf"^image locked:{sha} is not in ECR: the build stage must push it"):
        Tagger(aws.ecr, "locked").apply(sha, plan_tags(["sha", "latest"], sha, None))
    aws.push("locked", 1, "latest")
    aws.push("locked", 2, sha)
    with pytest.raises(StageFailed) as raised:
        Tagger(aws.ecr, "locked").apply(sha, plan_tags(["sha", "latest"], sha, None))
    assert "\n" not in str(raised.value)
    assert str(raised.value).startswith("aws ecr PutImage locked:latest: the tag is held by sha256:")
    assert str(raised.value).endswith("the repository's tags are immutable: cannot move it")
