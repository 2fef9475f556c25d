"""`target: {type: ecs}` and `router: {type: alb}` in shipyard.yaml: GLI's API loads without a `run` (ECS runs
the image), and what cannot work is one line with its file:line before anything reaches AWS."""

from __future__ import annotations

from shipyard.config import check_text

TG = "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/api-{}/6d0ecf831eec9f09"
ROLE = "arn:aws:iam::123456789012:role/gli-api-exec"
SECRET = "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:gli/prod/DATABASE_URL-AbCdEf"
LISTENER = "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:listener/app/gli/50dc6c495c0c9188/f2f7dc8efc522ab2"


def gli(*, mode: str = "blue_green", tgs: str = f"[{TG.format('blue')}, {TG.format('green')}]",
        strategy: str = "{type: blue_green}", secret: str = SECRET, image: str = '"{registry}/gli-api:{sha}"') -> str:
    return f"""\
project: gli
repos:
  api: {{path: .}}
environments:
  prod: {{branch: main}}
services:
  api:
    repo: api
    deploy:
      target:
        type: ecs
        cluster: gli-prod
        service: api
        image: {image}
        mode: {mode}
        target_groups: {tgs}
        subnets: [subnet-0a1b2c3d4e5f60718]
        security_groups: [sg-0123456789abcdef0]
        task_definition: {{family: gli-api, execution_role_arn: {ROLE}, container: {{name: api, port: 8080}}}}
        secrets: {{DATABASE_URL: "{secret}"}}
      router: {{type: alb, listener_arn: "{LISTENER}"}}
      strategy: {strategy}
"""


def problems(text: str) -> list[str]:
    _, found = check_text(text, "shipyard.yaml", {})
    return [str(p) for p in found]


def test_gli_api_loads_without_a_run_command() -> None:
    config, found = check_text(gli(), "shipyard.yaml", {})
    assert found == [] and config is not None
    target = config.services["api"].deploy.target
    assert target.type == "ecs" and target.mode == "blue_green" and target.instances == 1


def test_a_traffic_strategy_on_a_rolling_ecs_service_is_a_config_error() -> None:
    [line] = problems(gli(mode="rolling", tgs=f"[{TG.format('blue')}]", strategy="{type: canary, steps: "
                                                                                  "[{weight: 10}]}"))
    assert line.startswith("shipyard.yaml:") and "services.api.deploy.strategy" in line
    assert "strategy canary moves traffic between two services" in line
    assert problems(gli(mode="rolling", tgs=f"[{TG.format('blue')}]", strategy="{type: rolling}")) == []


def test_what_cannot_reach_aws_is_refused_on_load() -> None:
    assert "mode blue_green needs two target_groups" in " ".join(problems(gli(tgs=f"[{TG.format('blue')}]")))
    [leak] = problems(gli(secret="postgres://api:pw@db/gli"))               # a value where a reference goes
    assert "secret DATABASE_URL: not the ARN of a Secrets Manager secret or an SSM parameter" in leak
    assert "pw@db" not in leak                                               # and it is not echoed
    assert "image must name the release" in " ".join(problems(gli(image='"{registry}/gli-api:latest"')))
