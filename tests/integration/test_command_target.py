"""The command target through the engine, with a real config, store and git repo and a real small tool
(tool.py, written by the test) that records every invocation to a file: deploy, a failing deploy rolled
back, a timeout that kills the process group, a manual rollback, a failing `status` rolled back, the
previous release's `deploy` as the rollback when none is configured, and a secret that reaches the tool
through its environment but is masked in everything recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shipyard.agent.client import AgentClient
from shipyard.cli.project import Project
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.store import events as eq
from shipyard.store import outbox as oq
from shipyard.testing.wait import wait_until

pytestmark = pytest.mark.timeout(120)
SECRET = "tok-5f1e9c0d7a2b4e68"

TOOL = """\
import json, os, pathlib, subprocess, sys, time
ctl = pathlib.Path(os.environ["CONTROL"])
what, sha = sys.argv[1], sys.argv[2]
with (ctl / "calls.jsonl").open("a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "token": os.environ.get("API_TOKEN"),
                        "version": pathlib.Path("VERSION").read_text().strip()}) + "\\n")
print(f"{what} {sha[:8]} with token {os.environ.get('API_TOKEN')}", flush=True)
if (ctl / f"fail-{what}-{sha}").exists():
    print("boom", flush=True)
    sys.exit(3)
if (ctl / f"hang-{what}-{sha}").exists():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    (ctl / "child.pid").write_text(str(child.pid))
    time.sleep(600)
if what == "status" and (ctl / "unhealthy").exists():
    sys.exit(1)
if what == "status" and (ctl / f"sick-after-{sha}").exists():
    seen = ctl / f"status-count-{sha}"
    count = int(seen.read_text()) + 1 if seen.exists() else 1
    seen.write_text(str(count))
    sys.exit(1 if count > int((ctl / f"sick-after-{sha}").read_text()) else 0)
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()


class World:
    def __init__(self, root: Path, rollback: bool = True, deploy_extra: str = "") -> None:
        self.root, self.control = root, root / "control"
        self.repo = root / "infra"
        self.control.mkdir(parents=True)
        self.repo.mkdir()
        git(self.repo, "init", "-q", "-b", "main")
        (self.repo / "tool.py").write_text(TOOL)
        py = sys.executable
        back = f'rollback: "{py} tool.py rollback {{sha}} {{revision}}",' if rollback else ""
        (root / "shipyard.yaml").write_text(f"""\
project: gli
repos:
  infra: {{path: infra}}
environments:
  prod: {{branch: main}}
secrets: {{provider: env}}
notifications:
  channels: {{ops: {{type: webhook, url: "http://127.0.0.1:9/hook"}}}}
  routes: [{{events: ["deploy.*", "rollback.*"], to: [ops]}}]
services:
  infra:
    repo: infra
    env: {{CONTROL: "{self.control}", API_TOKEN: "${{secret:API_TOKEN}}"}}
    health: {{interval: 0.1s, timeout: 5s, healthy_threshold: 1, unhealthy_threshold: 1, start_period: 0s,
             deadline: 20s}}
    hooks: {{before_traffic: "echo before_traffic $SHIPYARD_REVISION >> {self.control}/hooks.log",
             validate_service: "echo validate_service $SHIPYARD_REVISION >> {self.control}/hooks.log",
             on_failure: "echo on_failure $SHIPYARD_REVISION >> {self.control}/hooks.log"}}
    deploy:
      {deploy_extra}
      target: {{type: command, deploy: "{py} tool.py deploy {{sha}} '{{service}} in {{env}}'", {back}
               status: "{py} tool.py status {{sha}}", timeout: 3s}}
""")

    def commit(self, version: str) -> str:
        (self.repo / "VERSION").write_text(version)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", version)
        return git(self.repo, "rev-parse", "HEAD")

    def hooks(self) -> list[str]:
        path = self.control / "hooks.log"
        return path.read_text().splitlines() if path.exists() else []

    def calls(self) -> list[dict[str, Any]]:
        path = self.control / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def environment(self) -> deployer.Environment:
        project = Project.load(self.root / "shipyard.yaml")
        # A command target needs no agent: the client is built (the router object wants one), never started.
        return project.environment("infra", "prod", AgentClient(project.agent_dir))

    def events(self, dep_id: str) -> list[Any]:
        project = Project.load(self.root / "shipyard.yaml")
        with project.store.session(readonly=True) as ses:
            return [(e.kind, e.message, e.data) for e in eq.list_events(ses, deployment_id=dep_id, limit=None,
                                                                       newest_first=False)]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("API_TOKEN", SECRET)
    return World(tmp_path)


async def deploy(world: World) -> deployer.Outcome:
    return await deployer.deploy(world.environment())


async def test_deploy_runs_the_command_with_filled_placeholders(world: World) -> None:
    v1 = world.commit("1")
    out = await deploy(world)
    assert out.state is DeployState.SUCCEEDED, out
    deploys = [c for c in world.calls() if c["argv"][0] == "deploy"]
    # '{service} in {env}' stays one argument, filled; the release dir is the cwd; the secret is in env.
    assert deploys == [{"argv": ["deploy", v1, "infra in prod"], "cwd": deploys[0]["cwd"], "token": SECRET,
                        "version": "1"}]
    assert Path(deploys[0]["cwd"]).name.startswith(v1[:8]) or v1[:8] in deploys[0]["cwd"]
    assert [c["argv"][:2] for c in world.calls() if c["argv"][0] == "status"] == [["status", v1]]
    assert world.hooks() == [f"before_traffic {v1}", f"validate_service {v1}"]     # around the one switch
    events = world.events(out.deployment_id)
    text = json.dumps(events)
    assert SECRET not in text and "with token ***" in text        # streamed output, masked
    assert any(kind == "release.progress" and "deploy " + v1[:8] in msg for kind, msg, _ in events)


async def second_deploy_fails(world: World, marker: str) -> tuple[str, str, deployer.Outcome]:
    """v1 deployed, then v2 whose tool finds `marker` (formatted with v2's sha): rolled back."""
    v1 = world.commit("1")
    assert (await deploy(world)).state is DeployState.SUCCEEDED
    v2 = world.commit("2")
    (world.control / marker.format(sha=v2)).touch()
    out = await deploy(world)
    assert out.state is DeployState.ROLLED_BACK, out
    return v1, v2, out


async def test_a_failing_deploy_rolls_back_with_the_previous_placeholders(world: World) -> None:
    v1, v2, out = await second_deploy_fails(world, "fail-deploy-{sha}")
    # Notified like any service: the failed deploy and its rollback are in the outbox for the channel.
    project = Project.load(world.root / "shipyard.yaml")
    with project.store.session(readonly=True) as ses:
        ids = {e.id: e.kind for e in eq.list_events(ses, deployment_id=out.deployment_id, limit=None)}
        queued = {ids[r.event_id] for r in oq.all_rows(ses) if r.event_id in ids and r.channel == "ops"}
    assert {"deploy.started", "deploy.failed", "rollback.started", "rollback.completed"} <= queued, queued
    assert "deploy command exited 3" in (out.reason or "") and "boom" in (out.reason or "")
    assert [c["argv"] for c in world.calls()][-2:] == [["deploy", v2, "infra in prod"],
                                                       ["rollback", v1, v1[:8]]]
    assert world.calls()[-1]["version"] == "1"        # run in v1's release directory
    assert world.hooks()[-2:] == [f"before_traffic {v2}", f"on_failure {v2}"]
    assert SECRET not in json.dumps(world.events(out.deployment_id))


async def test_a_deploy_past_its_timeout_is_killed_with_its_children(world: World) -> None:
    _, _, out = await second_deploy_fails(world, "hang-deploy-{sha}")
    assert "timed out after 3s" in (out.reason or "")
    child = int((world.control / "child.pid").read_text())

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # A zombie whose parent was killed is reaped by init; until then it counts as gone too.
        return Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
    wait_until(gone, timeout=10, what="the deploy command's child to be killed with its process group")
    assert world.calls()[-1]["argv"][0] == "rollback"


async def test_manual_rollback_runs_the_rollback_command(world: World) -> None:
    v1 = world.commit("1")
    first = await deploy(world)
    world.commit("2")
    second = await deploy(world)
    assert second.state is DeployState.SUCCEEDED
    out = await deployer.rollback(world.environment())
    assert out.state is DeployState.SUCCEEDED and out.revision == v1, out
    assert world.calls()[-2]["argv"] == ["rollback", v1, v1[:8]]      # then its status check
    assert world.calls()[-1]["argv"][:2] == ["status", v1]
    project = Project.load(world.root / "shipyard.yaml")
    from shipyard.store import deployments as dq
    with project.store.session(readonly=True) as ses:
        assert dq.get_deployment(ses, second.deployment_id).state == DeployState.ROLLED_BACK.value
        assert dq.get_deployment(ses, first.deployment_id).state == DeployState.SUCCEEDED.value


async def test_a_failing_status_rolls_back(world: World) -> None:
    v1, v2, out = await second_deploy_fails(world, "unhealthy")
    assert "unhealthy" in (out.reason or "")
    assert [c["argv"][:2] for c in world.calls()][-3:] == [["deploy", v2], ["status", v2], ["rollback", v1]]


async def test_without_a_rollback_command_the_previous_release_is_deployed_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    world = World(tmp_path, rollback=False)
    v1, _, _ = await second_deploy_fails(world, "fail-deploy-{sha}")
    assert world.calls()[-1]["argv"] == ["deploy", v1, "infra in prod"] and world.calls()[-1]["version"] == "1"


async def test_a_program_that_is_not_there_is_refused_before_anything(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    world = World(tmp_path)
    text = (tmp_path / "shipyard.yaml").read_text().replace(f'deploy: "{sys.executable} tool.py deploy',
                                                            'deploy: "no-such-cdk-xyz deploy')
    text = text.replace(f'status: "{sys.executable}', 'status: "no-such-probe-xyz')
    (tmp_path / "shipyard.yaml").write_text(text)
    world.commit("1")
    from shipyard.errors import TargetError
    with pytest.raises(TargetError) as err:
        await deploy(world)
    assert "no-such-cdk-xyz is not on PATH" in str(err.value) and "no-such-probe-xyz is not on PATH" in str(err.value)
    assert world.calls() == []


async def test_status_failing_during_the_bake_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_TOKEN", SECRET)
    world = World(tmp_path, deploy_extra="bake: 0s")
    world.commit("1")
    assert (await deploy(world)).state is DeployState.SUCCEEDED
    config = tmp_path / "shipyard.yaml"
    config.write_text(config.read_text().replace("bake: 0s", "bake: 60s"))   # ends early: it fails
    v2 = world.commit("2")
    (world.control / f"sick-after-{v2}").write_text("2")      # healthy for the wait, then sick in the bake
    out = await deploy(world)
    assert out.state is DeployState.ROLLED_BACK, out
    assert [c["argv"][0] for c in world.calls()][-1] == "rollback"
    kinds = [(k, m) for k, m, _ in world.events(out.deployment_id) if k == "health.changed"]
    assert kinds[0][1] == "the live release is healthy" and "unhealthy" in kinds[-1][1], kinds
