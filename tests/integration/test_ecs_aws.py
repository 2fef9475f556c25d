"""The ECS target and the ALB router through boto3, against moto in server mode.

What is checked against moto's *state* (and asserted here): task definition revisions and their content
(image by sha, environment, secrets as valueFrom, tags), services (created when missing, the task
definition they point at, desired count, load balancer), listener actions and weights, and that a failed
preflight changed none of these. What comes from moto's *reported status* (running counts, rolloutState)
is only driven, through MOTO_ECS_SERVICE_RUNNING (aws_world.running): moto runs no containers, so a test
here cannot show a task really became healthy; shipyard.targets.ecs_status is where that line is drawn.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from aws_world import World, build, credentials, running
from shipyard.errors import PreflightError, RouterError, TargetError, UsageError
from shipyard.routers.alb import AlbRouter
from shipyard.routers.base import WeightedBackend
from shipyard.secrets.redact import REDACT_ENV
from shipyard.targets.base import LaunchSpec
from shipyard.targets.ecs import EcsTarget

pytestmark = pytest.mark.timeout(60)
SHA_A = "a1" * 20
SHA_B = "b2" * 20
DB_URL = "postgres://api:s3cr3t-pw@db/gli"       # the secret's value: must never reach a task definition


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    credentials(monkeypatch)
    running(monkeypatch, 2)


@pytest.fixture
def world(moto_endpoint: str) -> World:
    return build(moto_endpoint)


def spec(revision: str, deployment: str = "deploy-1") -> LaunchSpec:
    """What the engine hands a target: the resolved environment, secrets included, and the redactor's list."""
    environ = {"PATH": "/usr/bin", "HOME": "/root", "DATABASE_URL": DB_URL, "WS_PORT": "8001",
               "SHIPYARD_SERVICE": "api", "SHIPYARD_ENV": "prod", "SHIPYARD_REVISION": revision,
               REDACT_ENV: json.dumps([DB_URL])}
    return LaunchSpec(service="api", env="prod", revision=revision, deployment=deployment, cwd=Path("/"),
                      argv=[], environ=environ, stop_timeout=5.0)


def target(world: World, lines: list[str] | None = None, **overrides: object) -> EcsTarget:
    sink = lines if lines is not None else []
    return EcsTarget(world.target(**overrides), "api", "prod", env_names=["DATABASE_URL", "WS_PORT"],
                     on_progress=sink.append)


async def test_two_releases_roll_through_one_service_with_a_revision_each(world: World) -> None:
    lines: list[str] = []
    t = target(world, lines)
    name = world.target().service
    assert world.service(name) is None                         # GLI's failure: the service was missing
    [first] = await t.start(spec(SHA_A), 1)
    svc = world.service(name)
    assert svc is not None and svc["taskDefinition"].endswith(f"{world.target().task_definition.family}:1")
    assert svc["desiredCount"] == 2 and svc["launchType"] == "FARGATE"
    assert svc["loadBalancers"] == [{"targetGroupArn": world.blue, "containerName": "api", "containerPort": 8080}]
    assert any("created ECS service" in line for line in lines)
    assert first.revision == SHA_A and first.address == world.blue

    [second] = await t.start(spec(SHA_B, "deploy-2"), 1)
    svc = world.service(name)
    assert svc is not None and svc["taskDefinition"].endswith(":2")
    assert svc["deploymentConfiguration"] == {"minimumHealthyPercent": 100, "maximumPercent": 200,
                                              "deploymentCircuitBreaker": {"enable": True, "rollback": True}}
    assert [i.revision for i in await t.instances()] == [SHA_B]           # ECS replaced the old revision
    assert second.id != first.id and any("2/2 running" in line for line in lines)   # progress was told

    family = world.target().task_definition.family
    revs = world.revisions(family)
    assert len(revs) == 2
    for arn, sha in zip(revs, (SHA_A, SHA_B), strict=True):
        td = world.task_definition(arn)
        [c] = td["containerDefinitions"]
        assert c["image"] == f"123456789012.dkr.ecr.ap-northeast-2.amazonaws.com/api:{sha}"
        assert c["secrets"] == [{"name": "DATABASE_URL", "valueFrom": world.secret_arn}]
        env = {e["name"]: e["value"] for e in c["environment"]}
        assert env == {"WS_PORT": "8001", "SHIPYARD_SERVICE": "api", "SHIPYARD_ENV": "prod",
                       "SHIPYARD_REVISION": sha, "DJANGO_SETTINGS_MODULE": "config.settings.prod"}
        assert "PATH" not in env and REDACT_ENV not in env              # this machine's variables stay here
        assert "s3cr3t" not in json.dumps(td, default=str)              # no plaintext secret anywhere in it
        assert {"key": "shipyard:revision", "value": sha} in td["tags"]
        assert td["executionRoleArn"] == world.execution_role and td["taskRoleArn"] == world.task_role


async def test_rollback_re_points_the_service_at_the_previous_task_definition(world: World) -> None:
    t = target(world)
    await t.start(spec(SHA_A), 1)
    await t.start(spec(SHA_B), 1)
    lines: list[str] = []
    t.on_progress = lines.append
    [back] = await t.start(spec(SHA_A, "rollback-1"), 1)
    svc = world.service(world.target().service)
    assert svc is not None and svc["taskDefinition"].endswith(":1")       # the earlier revision, not a third
    assert len(world.revisions(world.target().task_definition.family)) == 2
    assert back.revision == SHA_A and any("reusing task definition" in line for line in lines)


async def test_a_variable_holding_a_secret_without_a_reference_is_refused_before_registering(world: World) -> None:
    t = target(world, secrets={})
    with pytest.raises(UsageError, match="DATABASE_URL holds a secret value"):
        await t.start(spec(SHA_A), 1)
    assert world.revisions(world.target().task_definition.family) == []


async def test_preflight_lists_every_gap_at_once_and_changes_nothing(world: World) -> None:
    missing_tg = world.blue.replace("api-blue", "api-gone").rsplit("/", 1)[0] + "/0123456789abcdef"
    t = target(world, cluster=f"nope-{world.suffix}", security_groups=[world.closed_sg],
               target_groups=[missing_tg], subnets=[*world.subnets, "subnet-0123456789abcdef0"])
    with pytest.raises(PreflightError) as raised:
        await t.start(spec(SHA_A), 1)
    msg = str(raised.value)
    assert raised.value.exit_code == 2 and "\n" not in msg
    assert f"cluster nope-{world.suffix} does not exist" in msg
    assert f"no security group of {world.closed_sg} allows tcp port 8080 in" in msg
    assert f"target group {missing_tg} does not exist" in msg
    assert "subnet subnet-0123456789abcdef0 does not exist" in msg
    assert "(4 problems)" in msg
    assert world.revisions(world.target().task_definition.family) == []   # nothing registered
    assert world.service(world.target().service) is None                  # nothing created


async def test_preflight_names_missing_roles(world: World) -> None:
    td = world.target().task_definition.model_dump()
    td["task_role_arn"] = "arn:aws:iam::123456789012:role/not-there"
    with pytest.raises(PreflightError, match="task role arn:aws:iam::123456789012:role/not-there does not exist"):
        await target(world, task_definition=td).preflight()
    await target(world).preflight()                                       # the complete world passes


async def test_a_service_that_never_gets_steady_fails_at_the_deadline_with_its_progress(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    running(monkeypatch, 0)                 # moto reports no task running: the rollout never completes
    t = target(world, steady_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TargetError) as raised:
        await t.start(spec(SHA_A), 1)
    assert time.monotonic() - started < 10
    assert "not steady after 0.5s" in str(raised.value) and "0/2 running" in str(raised.value)


async def test_aws_refusing_is_one_line_naming_the_call_and_the_resource(world: World) -> None:
    t = target(world, cluster=f"gone-{world.suffix}")   # a cluster deleted under shipyard
    with pytest.raises(TargetError) as raised:
        await t.instances()
    msg = str(raised.value)
    assert msg.startswith(f"aws ecs DescribeServices gone-{world.suffix}/") and "ClusterNotFound" in msg
    assert "\n" not in msg


async def test_stop_scales_the_service_to_zero(world: World) -> None:
    t = target(world)
    [inst] = await t.start(spec(SHA_A), 1)
    await t.stop([inst], 5.0)
    svc = world.service(world.target().service)
    assert svc is not None and svc["desiredCount"] == 0 and svc["runningCount"] == 0
    assert await t.instances() == []


async def test_blue_green_brings_up_the_idle_color_and_keeps_the_previous_one_warm(world: World) -> None:
    t = target(world, mode="blue_green", target_groups=[world.blue, world.green])
    router = AlbRouter(world.router())
    [blue] = await t.start(spec(SHA_A), 1)
    assert blue.labels["color"] == "blue" and blue.address == world.blue
    await router.set_backends([WeightedBackend(blue.address, 100, SHA_A, blue.id)])
    [green] = await t.start(spec(SHA_B), 1)
    assert green.labels["color"] == "green" and green.address == world.green
    await router.set_backends([WeightedBackend(blue.address, 90, SHA_A, blue.id),
                               WeightedBackend(green.address, 10, SHA_B, green.id)])     # canary 10 %
    assert await router.verify([WeightedBackend(world.blue, 90, "", ""), WeightedBackend(world.green, 10, "", "")])
    await router.set_backends([WeightedBackend(green.address, 100, SHA_B, green.id)])
    await t.keep_warm([blue], time.time() + 0.5)
    assert [i.id for i in await t.instances()] == [blue.id, green.id]    # warm: still running

    deadline = time.monotonic() + 10
    while blue.id in {i.id for i in await t.instances()}:
        assert time.monotonic() < deadline, "the warm color never expired"
    blue_svc = world.service(f"{world.target().service}-blue")
    assert blue_svc is not None and blue_svc["desiredCount"] == 0          # scaled to 0 once expired

    [third] = await t.start(spec(SHA_A, "deploy-3"), 1)                    # the idle color again
    assert third.labels["color"] == "blue"


async def test_blue_green_refuses_to_replace_a_color_that_serves(world: World) -> None:
    t = target(world, mode="blue_green", target_groups=[world.blue, world.green])
    await t.start(spec(SHA_A), 1)
    await t.start(spec(SHA_B), 1)
    with pytest.raises(TargetError, match="neither is kept warm"):
        await t.start(spec(SHA_A), 1)


# ---- the ALB router ------------------------------------------------------------------------------------

def listener_action(world: World) -> dict[str, object]:
    out = world.client("elbv2").describe_listeners(ListenerArns=[world.listener])
    return dict(out["Listeners"][0]["DefaultActions"][0])


async def test_alb_weights_are_set_on_the_listener_and_read_back(world: World) -> None:
    r = AlbRouter(world.router())
    front = await r.ensure()
    assert front is not None and front.endswith(":80")
    await r.set_backends([WeightedBackend(world.blue, 750, SHA_A, "b"), WeightedBackend(world.green, 250, SHA_B, "g")])
    action = listener_action(world)
    assert action["Type"] == "forward"
    assert action["ForwardConfig"]["TargetGroups"] == [  # type: ignore[index]
        {"TargetGroupArn": world.blue, "Weight": 750}, {"TargetGroupArn": world.green, "Weight": 250}]
    assert {(b.address, b.weight) for b in await r.backends()} == {(world.blue, 750), (world.green, 250)}
    assert await r.verify([WeightedBackend(world.blue, 750, "", ""), WeightedBackend(world.green, 250, "", "")])
    assert not await r.verify([WeightedBackend(world.blue, 1, "", ""), WeightedBackend(world.green, 1, "", "")])
    world.client("elbv2").modify_listener(ListenerArn=world.listener, DefaultActions=[
        {"Type": "forward", "TargetGroupArn": world.green}])               # changed behind shipyard's back
    assert not await r.verify([WeightedBackend(world.blue, 750, "", ""), WeightedBackend(world.green, 250, "", "")])
    await r.set_backends([])
    assert listener_action(world)["Type"] == "fixed-response" and await r.backends() == []


async def test_alb_refuses_bad_weights_and_addresses_before_calling_aws(world: World) -> None:
    r = AlbRouter(world.router())
    await r.set_backends([WeightedBackend(world.blue, 1, "", "")])
    for bad, why in (([WeightedBackend(world.blue, 1000, "", "")], "outside 0..999"),
                     ([WeightedBackend("127.0.0.1:8080", 1, "", "")], "not a target group ARN")):
        with pytest.raises(RouterError, match=why):
            await r.set_backends(bad)
    assert {(b.address, b.weight) for b in await r.backends()} == {(world.blue, 1)}     # unchanged


async def test_alb_drain_waits_the_deregistration_delay(world: World) -> None:
    r = AlbRouter(world.router())
    started = time.monotonic()
    assert await r.drain(world.green, timeout=30.0) == 0
    assert 0.9 <= time.monotonic() - started < 10          # the group's delay is 1 s (aws_world)
    started = time.monotonic()
    await r.drain(world.green, timeout=0.2)                # the caller's budget bounds it
    assert time.monotonic() - started < 0.9


async def test_alb_refusal_is_one_line_naming_the_call_and_the_listener(world: World) -> None:
    gone = world.listener.rsplit("/", 1)[0] + "/0000000000000000"
    r = AlbRouter(world.router(listener_arn=gone))
    with pytest.raises(RouterError) as raised:
        await r.backends()
    assert str(raised.value).startswith(f"aws elbv2 DescribeListeners {gone}: ListenerNotFound")
    assert "\n" not in str(raised.value)


def test_the_iam_policy_names_the_services_cluster_roles_and_listener(world: World) -> None:
    from shipyard.aws.policy import Scope, Statement, merge
    from shipyard.routers.kinds import ALB
    from shipyard.targets.kinds import ECS

    assert ECS.iam is not None and ALB.iam is not None
    scope = Scope("123456789012")
    cfg = world.target(mode="blue_green", target_groups=[world.blue, world.green])
    statements: list[Statement] = ECS.iam(cfg, scope) + ALB.iam(world.router(), scope)
    by_sid = {st.sid: st for st in merge(statements)}
    base = f"arn:aws:ecs:{cfg.region}:123456789012"
    assert set(by_sid["EcsServices"].resources) == {f"{base}:service/{cfg.cluster}/{cfg.service}-blue",
                                                    f"{base}:service/{cfg.cluster}/{cfg.service}-green"}
    assert "ecs:UpdateService" in by_sid["EcsServices"].actions
    assert by_sid["EcsPassRoles"].resources == (world.execution_role, world.task_role)
    assert by_sid["AlbWeights"] == Statement("AlbWeights", ("elasticloadbalancing:ModifyListener",),
                                             (world.listener,))
    doc = {"Version": "2012-10-17", "Statement": [st.to_dict() for st in by_sid.values()]}
    made = world.client("iam").create_policy(PolicyName=f"shipyard-ecs-{world.suffix}", PolicyDocument=json.dumps(doc))
    assert made["Policy"]["Arn"].endswith(f"shipyard-ecs-{world.suffix}")      # IAM parses it as AWS would


async def test_health_is_ecs_running_count_and_target_health_never_a_probe_of_the_arn(world: World) -> None:
    t = target(world)
    [inst] = await t.start(spec(SHA_A), 1)
    assert await t.instance_health(inst.address) is None           # 2/2 running, 2 targets healthy
    world.deregister(world.blue)                                   # the ALB lost the tasks
    assert await t.instance_health(inst.address) == f"target group api-blue-{world.suffix}: 0 of 2 targets healthy"
    world.register(world.blue, 2)
    assert await t.instance_health(inst.address) is None
    await t.stop([inst], 5.0)
    assert await t.instance_health(inst.address) == f"ECS service {world.cluster}/{world.target().service} runs nothing"
    assert "is no service of" in (await t.instance_health(world.green) or "")     # not this target's group


def test_an_ecr_policy_on_the_target_adds_the_housekeeping_statements(world: World) -> None:
    from types import SimpleNamespace

    from shipyard.aws.policy import Scope, ecr_statements

    cfg = world.target(ecr={"keep": 10})
    got = {st.sid: st for st in ecr_statements(SimpleNamespace(image=None, target=cfg, service="api", env="prod"),
                                               Scope("123456789012"))}
    assert got["EcrPrune"].resources == ("arn:aws:ecr:ap-northeast-2:123456789012:repository/api",)
    assert got["EcrPruneClusters"].resources == (f"arn:aws:ecs:ap-northeast-2:123456789012:cluster/{world.cluster}",)
    assert ecr_statements(SimpleNamespace(image=None, target=world.target(), service="api", env="prod"),
                          Scope()) == []                                  # no policy, no housekeeping grant
