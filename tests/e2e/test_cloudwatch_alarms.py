"""CloudWatch alarms as a rollback trigger (CodeDeploy's model): `deploy.alarms: [{cloudwatch: NAME}]` reads
the alarm's state from CloudWatch (moto in server mode) during the bake, and an ALARM rolls the release
back. What moto gives here is the alarm's stored state (set_alarm_state), exactly what DescribeAlarms
returns from AWS; moto does not evaluate alarms from metrics, which is CloudWatch's job, not shipyard's.

Also through the real CLI: the state read each poll shows in `shipyard show`; an alarm that does not exist
is an error kept on the watch (the bake's verdict does not turn "unknown" into "fine" or into a rollback);
and the metric source `deploy.metrics: cw` reads an ALB-style metric through GetMetricData."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from shipyard.demo.workspace import commit_version

from .conftest import E2E, assert_ok, get_version

REGION = "us-east-1"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def _cloudwatch(endpoint: str) -> Any:
    return boto3.client("cloudwatch", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _alarm(cw: Any, name: str, state: str) -> None:
    cw.put_metric_alarm(AlarmName=name, Namespace="AWS/ApplicationELB", MetricName="HTTPCode_Target_5XX_Count",
                        Statistic="Sum", Period=60, EvaluationPeriods=1, Threshold=10,
                        ComparisonOperator="GreaterThanThreshold")
    cw.set_alarm_state(AlarmName=name, StateValue=state, StateReason=f"set by the test: {state}")


def _with_alarms(e2e: E2E, endpoint: str, names: list[str], bake: str) -> None:
    refs = ", ".join(f"{{cloudwatch: {n}, endpoint_url: '{endpoint}', region: {REGION}, poll: 1s}}" for n in names)
    e2e.edit_config(lambda text: text.replace(
        "      strategy: {type: rolling, batch_size: 1}\n",
        f"      strategy: {{type: rolling, batch_size: 1}}\n      bake: {bake}\n      alarms: [{refs}]\n", 1))


def _alarm_details(e2e: E2E, deployment: str) -> dict[str, Any]:
    """The alarms of the last analyze step that recorded any, as `shipyard show --json` prints them."""
    shown = json.loads(assert_ok(e2e.cli("show", deployment, "--json")).stdout)
    found = [st["detail"]["alarms"] for st in shown["steps"] if (st.get("detail") or {}).get("alarms")]
    assert found, shown["steps"]
    return dict(found[-1])


@pytest.fixture
def aws_e2e(new_workspace, moto_endpoint: str) -> E2E:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    e2e.env.update(AWS_ENV)
    return e2e


def test_a_cloudwatch_alarm_in_alarm_rolls_the_release_back(aws_e2e: E2E, moto_endpoint: str) -> None:
    cw = _cloudwatch(moto_endpoint)
    _alarm(cw, "api-5xx-high", "OK")
    _with_alarms(aws_e2e, moto_endpoint, ["api-5xx-high"], "2s")
    assert_ok(aws_e2e.deploy())                                   # OK through the whole bake: it succeeds
    first = aws_e2e.deployments()[0]
    assert first["state"] == "succeeded", first

    commit_version(aws_e2e.ws, "api", "2.0.0")
    cw.set_alarm_state(AlarmName="api-5xx-high", StateValue="ALARM", StateReason="Threshold Crossed: 42 > 10")
    res = aws_e2e.deploy()
    assert res.returncode == 1, str(res)
    last = aws_e2e.deployments()[0]
    assert last["state"] == "rolled_back", last
    assert "alarm cloudwatch:api-5xx-high in ALARM (CloudWatch: Threshold Crossed: 42 > 10)" in last["reason"]
    assert get_version(aws_e2e.api_port)["version"] == "1.0.0"
    alarms = _alarm_details(aws_e2e, last["id"])
    assert alarms["cloudwatch:api-5xx-high"]["state"] == "ALARM", alarms
    assert alarms["cloudwatch:api-5xx-high"]["cloudwatch"] == "api-5xx-high"


def test_an_alarm_that_cannot_be_read_fails_the_deploy_unless_ignored(aws_e2e: E2E, moto_endpoint: str) -> None:
    _with_alarms(aws_e2e, moto_endpoint, ["no-such-alarm"], "1s")
    res = aws_e2e.deploy()
    assert res.returncode == 1, str(res)
    dep = aws_e2e.deployments()[0]
    assert dep["state"] == "failed", dep              # the first release: there is nothing to roll back to
    assert "alarm cloudwatch:no-such-alarm cannot be read (aws cloudwatch DescribeAlarms no-such-alarm: no such " \
           "alarm" in dep["reason"], dep["reason"]

    aws_e2e.edit_config(lambda text: text.replace("poll: 1s}", "poll: 1s, ignore_poll_failure: true}"))
    assert_ok(aws_e2e.deploy())
    dep = aws_e2e.deployments()[0]
    assert dep["state"] == "succeeded", dep
    alarms = _alarm_details(aws_e2e, dep["id"])
    assert "no such alarm" in alarms["cloudwatch:no-such-alarm"]["error"], alarms
