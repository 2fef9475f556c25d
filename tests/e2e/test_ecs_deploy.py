"""GLI's API on ECS behind an ALB, deployed through the real CLI (`shipyard deploy`, `shipyard rollback`) in a
project of its own, against moto in server mode (the config's endpoint_url).

What is checked against moto's *state*, read back with boto3 after each command: the ECS services (created
when missing, the task definition each points at, desired count, deployment configuration with the circuit
breaker), the task definition revisions, the listener's weighted forward, the warm tag. What is *driven*,
never verified: moto's reported status. The running count comes from MOTO_ECS_SERVICE_RUNNING (read by the
moto server in this process when a service is created) and each target group's targets are registered by
tests/aws_world.py (moto's ECS registers none; moto calls every registered target healthy), so "healthy"
and "steady" here mean what moto was told to report. An instance's health is asked of the target
(ECS running count + target health), never probed at its address: a probe of a target group ARN would
fail every deploy below.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aws_world import MEDIA, REGION, World, build, credentials, manifest, next_second, running
from shipyard.testing.cli import CliResult, run_cli

from .conftest import cli_env

pytestmark = pytest.mark.timeout(180)
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=30).stdout.strip()


class Project:
    """A project dir with the api repo and a shipyard.yaml whose api runs on the world's ECS cluster."""

    def __init__(self, root: Path, world: World) -> None:
        self.root, self.world, self.repo = root, world, root / "api"
        self.repo.mkdir(parents=True)
        git(self.repo, "init", "-q", "-b", "main")

    def write(self, *, mode: str = "blue_green", strategy: str = "{type: blue_green, drain_timeout: 1s}",
              extra: str = "", steady: str = "20s") -> None:
        w = self.world
        tgs = f"[{w.blue}, {w.green}]" if mode == "blue_green" else f"[{w.blue}]"
        (self.root / "shipyard.yaml").write_text(f"""\
project: gli
repos:
  api: {{path: api}}
environments:
  prod: {{branch: main}}
services:
  api:
    repo: api
    health: {{interval: 0.1s, timeout: 2s, healthy_threshold: 1, unhealthy_threshold: 1, start_period: 0s,
             deadline: 20s}}
    deploy:
      target:
        type: ecs
        cluster: {w.cluster}
        service: api-{w.suffix}
        region: {REGION}
        endpoint_url: "{w.endpoint}"
        registry: 123456789012.dkr.ecr.{REGION}.amazonaws.com
        image: "{{registry}}/gli-api:{{sha}}"
        mode: {mode}
        target_groups: {tgs}
        subnets: [{", ".join(w.subnets)}]
        security_groups: [{w.sg}]
        desired_count: 2
        poll_interval: 0.1s
        steady_timeout: {steady}
        deployment: {{minimum_healthy_percent: 50, maximum_percent: 200}}
        task_definition:
          family: gli-api-{w.suffix}
          execution_role_arn: {w.execution_role}
          task_role_arn: {w.task_role}
          container: {{name: api, port: 8080}}
        secrets: {{DATABASE_URL: "{w.secret_arn}"}}
      router: {{type: alb, listener_arn: "{w.listener}", region: {REGION}, endpoint_url: "{w.endpoint}"}}
      strategy: {strategy}
      keep_previous: 10m
{extra}""")

    def commit(self, version: str) -> str:
        (self.repo / "VERSION").write_text(version)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-qm", version)
        return git(self.repo, "rev-parse", "HEAD")

    def cli(self, *args: str) -> CliResult:
        return run_cli(self.root, *args, env=cli_env(**AWS_ENV), timeout=150)

    def last_or_none(self) -> dict[str, Any] | None:
        db = sqlite3.connect(self.root / ".shipyard" / "state.db")
        try:
            row = db.execute("SELECT id, state, revision, reason FROM deployments ORDER BY created_at DESC, "
                             "id DESC LIMIT 1").fetchone()
        finally:
            db.close()
        return None if row is None else dict(zip(("id", "state", "revision", "reason"), row, strict=True))

    def last(self) -> dict[str, Any]:
        found = self.last_or_none()
        assert found is not None, "no deployment recorded"
        return found


def ok(res: CliResult) -> CliResult:
    assert res.returncode == 0, str(res)
    assert "Traceback" not in res.stdout + res.stderr, str(res)
    return res


@pytest.fixture
def world(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> World:
    credentials(monkeypatch)
    running(monkeypatch, 2)
    return build(moto_endpoint)


@pytest.fixture
def project(tmp_path: Path, world: World) -> Iterator[Project]:
    from shipyard.agent.daemon import stop_agent

    p = Project(tmp_path / "gli", world)
    p.write()
    yield p
    stop_agent(p.root / ".shipyard" / "agent", stop_instances=True)


def td_of(world: World, name: str) -> str:
    svc = world.service(name)
    assert svc is not None, f"no ECS service {name}"
    return str(svc["taskDefinition"]).rsplit("/", 1)[-1]


def test_blue_green_creates_the_missing_service_flips_weights_and_rolls_back_to_the_warm_color(
        project: Project, world: World) -> None:
    svc, family = f"api-{world.suffix}", f"gli-api-{world.suffix}"
    v1 = project.commit("1.0.0")
    assert world.service(f"{svc}-blue") is None                     # GLI's failure: the service is missing
    first = ok(project.cli("deploy", "api", "--env", "prod"))
    assert "created ECS service" in first.stdout + first.stderr, str(first)
    assert td_of(world, f"{svc}-blue") == f"{family}:1" and world.service(f"{svc}-green") is None
    assert world.weights() == {world.blue: 100}
    assert project.last()["state"] == "succeeded"

    v2 = project.commit("2.0.0")
    ok(project.cli("deploy", "api", "--env", "prod"))
    assert td_of(world, f"{svc}-green") == f"{family}:2"
    assert {a: w for a, w in world.weights().items() if w} == {world.green: 100}     # the flip, read back
    blue = world.service(f"{svc}-blue")
    assert blue is not None and blue["desiredCount"] == 2                            # kept warm
    assert any(t["key"] == "shipyard:warm-until" for t in blue.get("tags", [])), blue.get("tags")
    image = world.task_definition(world.revisions(family)[1])["containerDefinitions"][0]["image"]
    assert image.endswith(f"/gli-api:{v2}")
    assert project.last()["revision"] == v2
    # status asks ECS itself: both colors, the listener's weights, health as ECS and the ALB report it
    [row] = ok(project.cli("status", "--json")).json()["status"]
    shown = {i["revision"]: (i["traffic_percent"], i["health"], bool(i["warm_until"])) for i in row["instances"]}
    assert shown == {v2: (100.0, "healthy", False), v1: (0.0, "healthy", True)}, json.dumps(row)
    assert row["revision"] == v2 and "router_error" not in row and "target_error" not in row, json.dumps(row)
    table = ok(project.cli("status")).stdout
    assert f"{svc}-green@{family}:2" in table and f"{svc}-blue@{family}:1" in table, table

    rolled = ok(project.cli("rollback", "api", "--env", "prod", "--json"))
    assert rolled.json()["revision"] == v1 and rolled.json()["state"] == "succeeded", str(rolled)
    assert {a: w for a, w in world.weights().items() if w} == {world.blue: 100}      # a flip back, no deploy
    assert td_of(world, f"{svc}-blue") == f"{family}:1"
    assert len(world.revisions(family)) == 2                                         # nothing registered


def test_rolling_goes_through_ecs_own_deployment_and_waits_for_steady_state(project: Project, world: World) -> None:
    project.write(mode="rolling", strategy="{type: rolling, batch_size: 1, drain_timeout: 1s}")
    svc, family = f"api-{world.suffix}", f"gli-api-{world.suffix}"
    project.commit("1.0.0")
    ok(project.cli("deploy", "api", "--env", "prod"))
    v2 = project.commit("2.0.0")
    res = ok(project.cli("deploy", "api", "--env", "prod"))
    service = world.service(svc)
    assert service is not None and td_of(world, svc) == f"{family}:2"
    assert service["deploymentConfiguration"] == {"minimumHealthyPercent": 50, "maximumPercent": 200,
                                                  "deploymentCircuitBreaker": {"enable": True, "rollback": True}}
    assert "2/2 running" in res.stdout + res.stderr, str(res)        # waited for steady state, and said so
    last = project.last()
    assert (last["state"], last["revision"]) == ("succeeded", v2)
    assert world.weights() == {world.blue: 100}


def test_a_service_that_never_gets_steady_fails_the_deploy_in_time(project: Project, world: World,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    running(monkeypatch, 0)                                          # moto reports no task running
    project.write(mode="rolling", strategy="{type: rolling, batch_size: 1, drain_timeout: 1s}", steady="1s")
    project.commit("1.0.0")
    res = project.cli("deploy", "api", "--env", "prod")
    assert res.returncode == 1, str(res)
    assert "Traceback" not in res.stdout + res.stderr
    last = project.last()
    assert last["state"] == "failed" and "not steady after 1s" in last["reason"] and "0/2 running" in last["reason"]


def test_a_cloudwatch_alarm_in_alarm_during_the_bake_rolls_back_to_the_warm_color(project: Project,
                                                                                  world: World) -> None:
    cw = world.client("cloudwatch")
    cw.put_metric_alarm(AlarmName=f"api-5xx-high-{world.suffix}", Namespace="AWS/ApplicationELB",
                        MetricName="HTTPCode_Target_5XX_Count", Statistic="Sum", Period=60, EvaluationPeriods=1,
                        Threshold=10, ComparisonOperator="GreaterThanThreshold",
                        Dimensions=[{"Name": "TargetGroup", "Value": world.green.split(":", 5)[-1]}])
    cw.set_alarm_state(AlarmName=f"api-5xx-high-{world.suffix}", StateValue="OK", StateReason="quiet")
    project.write(extra=f"""      bake: 2s
      alarms: [{{cloudwatch: api-5xx-high-{world.suffix}, endpoint_url: "{world.endpoint}", region: {REGION},
                poll: 1s}}]
""")
    v1 = project.commit("1.0.0")
    ok(project.cli("deploy", "api", "--env", "prod"))
    project.commit("2.0.0")
    cw.set_alarm_state(AlarmName=f"api-5xx-high-{world.suffix}", StateValue="ALARM",
                       StateReason="Threshold Crossed: 42 > 10")
    res = project.cli("deploy", "api", "--env", "prod")
    assert res.returncode == 1, str(res)
    last = project.last()
    assert last["state"] == "rolled_back", last
    assert f"alarm cloudwatch:api-5xx-high-{world.suffix} in ALARM" in last["reason"], last["reason"]
    assert {a: w for a, w in world.weights().items() if w} == {world.blue: 100}      # back on v1's color
    assert td_of(world, f"{svc(world)}-blue") == f"gli-api-{world.suffix}:1"
    [row] = ok(project.cli("status", "--json")).json()["status"]
    assert row["serving_deployment"]["revision"] == v1, json.dumps(row)


def svc(world: World) -> str:
    return f"api-{world.suffix}"


def test_a_security_group_closed_to_the_port_refuses_the_deploy_before_anything_changes(
        project: Project, world: World) -> None:
    text = (project.root / "shipyard.yaml").read_text().replace(f"security_groups: [{world.sg}]",
                                                                f"security_groups: [{world.closed_sg}]")
    (project.root / "shipyard.yaml").write_text(text)
    project.commit("1.0.0")
    res = project.cli("deploy", "api", "--env", "prod")
    assert res.returncode == 2, str(res)
    assert f"no security group of {world.closed_sg} allows tcp port 8080 in" in res.stderr, str(res)
    assert world.service(f"api-{world.suffix}-blue") is None                       # nothing created
    assert world.revisions(f"gli-api-{world.suffix}") == []                        # nothing registered
    assert world.weights() == {world.blue: 1}                  # the listener as the infrastructure made it
    assert not (project.root / ".shipyard" / "state.db").exists() or project.last_or_none() is None


def test_a_canary_moves_the_listener_weights_between_the_colors_in_steps(project: Project, world: World) -> None:
    project.write(strategy="{type: canary, steps: [{weight: 25, pause: 0s}], drain_timeout: 1s}")
    project.commit("1.0.0")
    ok(project.cli("deploy", "api", "--env", "prod"))
    project.commit("2.0.0")
    res = ok(project.cli("deploy", "api", "--env", "prod"))
    assert f"{world.green}=25, {world.blue}=75" in res.stdout, res.stdout      # the canary step, as sent
    assert {a: w for a, w in world.weights().items() if w} == {world.green: 100}  # and the end, read back


def test_after_keep_previous_a_rollback_starts_the_previous_task_definition_again(project: Project,
                                                                                  world: World) -> None:
    project.write(extra="")
    text = (project.root / "shipyard.yaml").read_text().replace("keep_previous: 10m", "keep_previous: 1s")
    (project.root / "shipyard.yaml").write_text(text)
    family = f"gli-api-{world.suffix}"
    v1 = project.commit("1.0.0")
    ok(project.cli("deploy", "api", "--env", "prod"))
    project.commit("2.0.0")
    ok(project.cli("deploy", "api", "--env", "prod"))
    blue = world.service(f"{svc(world)}-blue")
    assert blue is not None
    until = float(next(t["value"] for t in blue.get("tags", []) if t["key"] == "shipyard:warm-until"))
    assert until - time.time() < 5                                             # keep_previous: 1s
    while time.time() <= until:            # the warm color's time passes (a wall-clock condition, bounded above)
        time.sleep(0.05)
    # Nothing warm is left (listing blue after its time scales it to 0): the rollback is a blue/green deploy
    # of v1 again, blue started on the earlier task definition found by its digest, then the flip.
    rolled = ok(project.cli("rollback", "api", "--env", "prod")).stdout
    assert "deploy.started blue_green" in rolled and f"reusing task definition {family}:1" in rolled, rolled
    last = project.last()
    assert (last["revision"], last["state"]) == (v1, "succeeded"), last
    blue = world.service(f"{svc(world)}-blue")
    assert blue is not None and blue["desiredCount"] == 2 and td_of(world, f"{svc(world)}-blue") == f"{family}:1"
    assert len(world.revisions(family)) == 2                                   # reused by its digest
    assert {a: w for a, w in world.weights().items() if w} == {world.blue: 100}


def test_ecr_housekeeping_after_a_deploy_keeps_the_newest_the_live_and_the_warm_image(
        project: Project, world: World) -> None:
    """`target.ecr: {keep: 1}`: after each successful deploy the repository keeps its newest image and every
    image a live or warm service uses, and nothing else; what went is in the deployment's events."""
    repo = f"gli-api-{world.suffix}"
    text = (project.root / "shipyard.yaml").read_text()
    (project.root / "shipyard.yaml").write_text(
        text.replace("gli-api:{sha}", repo + ":{sha}").replace("        mode: blue_green",
                                                               "        ecr: {keep: 1}\n        mode: blue_green"))
    ecr = world.client("ecr")
    ecr.create_repository(repositoryName=repo)

    def push(n: int, tag: str) -> str:
        next_second()
        out = ecr.put_image(repositoryName=repo, imageManifest=manifest(n), imageManifestMediaType=MEDIA,
                            imageTag=tag)
        return str(out["image"]["imageId"]["imageDigest"])

    def tags() -> set[str]:
        return {t for d in ecr.describe_images(repositoryName=repo)["imageDetails"] for t in d.get("imageTags", [])}

    old = push(1, "old-build")
    v1 = project.commit("1.0.0")
    push(2, v1)
    ok(project.cli("deploy", "api", "--env", "prod"))
    assert tags() == {v1}                                    # newest and live: the old build went
    db = sqlite3.connect(project.root / ".shipyard" / "state.db")
    try:
        [(data,)] = db.execute("SELECT data FROM events WHERE kind = 'release.pruned'").fetchall()
    finally:
        db.close()
    assert json.loads(data)["pruned"] == [f"{repo}@{old}"]

    v2 = project.commit("2.0.0")
    push(3, v2)
    ok(project.cli("deploy", "api", "--env", "prod"))
    assert tags() == {v1, v2}         # v2 newest and live; v1 beyond keep, but blue runs it, warm for rollback
    ok(project.cli("rollback", "api", "--env", "prod"))
    assert {a: w for a, w in world.weights().items() if w} == {world.blue: 100}
