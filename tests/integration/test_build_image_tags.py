"""The build stage's image tags through the engine, with a real config, store, git repo and moto (server
mode) as ECR: the build pushes <repository>:<full sha> (push.py, written by the test, with boto3 as a
`docker push` would), shipyard adds the semver tag from the commit's git tag and moves `latest`, and the
record is stored with the deployment's build step; a build that did not push fails the deploy in one line
before the target is touched (the command target's deploy command never runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from shipyard.agent.client import AgentClient
from shipyard.cli.project import Project
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.store import steps as sq

pytestmark = pytest.mark.timeout(120)
REGION = "us-east-1"

PUSH = """\
import json, os, pathlib, sys
import boto3
sha = os.environ["SHIPYARD_REVISION"]
if pathlib.Path(os.environ["CONTROL"], "no-push").exists():
    print("built, not pushed"); sys.exit(0)
ecr = boto3.client("ecr", region_name="us-east-1", endpoint_url=os.environ["ECR_ENDPOINT"],
                   aws_access_key_id="testing", aws_secret_access_key="testing")
layer = "sha256:" + sha + sha[:24]
manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": layer},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 3,
                        "digest": layer}]}
ecr.put_image(repositoryName="gli/api", imageManifest=json.dumps(manifest), imageTag=sha)
print("pushed gli/api:" + sha)
"""

RECORD = """\
import os, pathlib, sys
with pathlib.Path(os.environ["CONTROL"], "deployed").open("a") as f:
    f.write(sys.argv[1] + "\\n")
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()


class World:
    def __init__(self, root: Path, endpoint: str) -> None:
        self.root, self.control, self.repo = root, root / "control", root / "api"
        self.control.mkdir(parents=True)
        self.repo.mkdir()
        git(self.repo, "init", "-q", "-b", "main")
        (self.repo / "push.py").write_text(PUSH)
        (self.repo / "record.py").write_text(RECORD)
        py = sys.executable
        (root / "shipyard.yaml").write_text(f"""\
project: gli
repos:
  api: {{path: api}}
environments:
  prod: {{branch: main}}
services:
  api:
    repo: api
    build: "{py} push.py"
    env: {{CONTROL: "{self.control}", ECR_ENDPOINT: "{endpoint}"}}
    image: {{repository: gli/api, tags: [sha, semver, latest], region: {REGION}, endpoint_url: "{endpoint}"}}
    health: {{interval: 0.1s, timeout: 5s, healthy_threshold: 1, unhealthy_threshold: 1, start_period: 0s,
             deadline: 20s}}
    deploy:
      target: {{type: command, deploy: "{py} record.py {{sha}}", timeout: 10s}}
""")
        self.ecr = boto3.client("ecr", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                                aws_secret_access_key="testing")
        self.ecr.create_repository(repositoryName="gli/api")

    def commit(self, version: str, tag: str | None = None) -> str:
        (self.repo / "VERSION").write_text(version)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", version)
        if tag:
            git(self.repo, "tag", "-a", tag, "-m", tag)     # annotated: --points-at peels it
        return git(self.repo, "rev-parse", "HEAD")

    def deployed(self) -> list[str]:
        path = self.control / "deployed"
        return path.read_text().split() if path.exists() else []

    def images(self) -> dict[str, list[str]]:
        return {d["imageDigest"]: sorted(d.get("imageTags") or [])
                for d in self.ecr.describe_images(repositoryName="gli/api")["imageDetails"]}

    async def deploy(self) -> deployer.Outcome:
        project = Project.load(self.root / "shipyard.yaml")
        return await deployer.deploy(project.environment("api", "prod", AgentClient(project.agent_dir)))

    def prepare_step(self, dep_id: str) -> Any:
        project = Project.load(self.root / "shipyard.yaml")
        with project.store.session(readonly=True) as ses:
            [step] = [s for s in sq.list_steps(ses, dep_id) if s.kind == "prepare"]
            return step.state, step.detail, step.error


@pytest.fixture
def world(tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    # shipyard's own credentials (the build never sees them: AWS_* is scrubbed from its environment).
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    made = World(tmp_path, moto_endpoint)
    yield made
    made.ecr.delete_repository(repositoryName="gli/api", force=True)      # the moto server is per module


async def test_the_build_image_gets_semver_and_latest_and_the_record_is_stored(world: World) -> None:
    v1 = world.commit("1", tag="v1.2.0")
    out = await world.deploy()
    assert out.state is DeployState.SUCCEEDED, out
    state, detail, _ = world.prepare_step(out.deployment_id)
    record = detail["image"]
    assert state == "succeeded" and record["repository"] == "gli/api" and record["notes"] == []
    assert [(t["tag"], t["action"]) for t in record["tags"]] == [(v1, "pushed by build"), ("1.2.0", "added"),
                                                                 ("latest", "added")]
    assert world.images() == {record["digest"]: sorted([v1, "1.2.0", "latest"])}

    # The same revision again (its release is built already, so no push): the tags are there: no change.
    again = await world.deploy()
    assert again.state is DeployState.SUCCEEDED, again
    _, detail2, _ = world.prepare_step(again.deployment_id)
    assert detail2["built"] is False
    assert [t["action"] for t in detail2["image"]["tags"]] == ["pushed by build", "already", "already"]

    # A commit without a version tag: latest moves to it, and a note says why there is no semver tag.
    v2 = world.commit("2")
    out2 = await world.deploy()
    assert out2.state is DeployState.SUCCEEDED, out2
    _, detail3, _ = world.prepare_step(out2.deployment_id)
    assert detail3["image"]["notes"] == [f"semver: commit {v2[:8]} has no vX.Y.Z git tag; no semver tag pushed"]
    assert detail3["image"]["tags"][1] == {"tag": "latest", "action": "moved", "from": record["digest"]}
    assert world.images() == {record["digest"]: sorted([v1, "1.2.0"]), detail3["image"]["digest"]: [v2, "latest"]}
    assert world.deployed() == [v1, v1, v2]


async def test_a_build_that_did_not_push_fails_before_the_target_is_touched(world: World) -> None:
    (world.control / "no-push").touch()
    v1 = world.commit("1", tag="v3.0.0")
    out = await world.deploy()
    assert out.state is DeployState.FAILED, out
    state, _, error = world.prepare_step(out.deployment_id)
    assert state == "failed" and "\n" not in error
    assert error == (f"image gli/api:{v1} is not in ECR: the build stage must push it (docker push "
                     "<registry>/gli/api:$SHIPYARD_REVISION)")
    assert world.deployed() == [] and world.images() == {}
    assert json.dumps(out.reason or "").count("not in ECR") == 1
