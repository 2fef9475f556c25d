"""Metric sources chosen in shipyard.yaml (`metrics:` and `deploy.metrics`) and CloudWatch alarm refs
(`deploy.alarms: [{cloudwatch: NAME}]`): the config's errors, and the providers they build, against moto.

moto stores what PutMetricData sends and answers GetMetricData from it, and stores alarm states as
SetAlarmState leaves them; that is all these tests rely on (moto evaluates no alarm)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from shipyard.config import check_text, load_config
from shipyard.config.alerting import CloudWatchAlarmRef
from shipyard.engine.settings import service_settings
from shipyard.errors import UsageError
from shipyard.monitoring.alarms import AlarmState
from shipyard.monitoring.providers import Scoped, from_source
from shipyard.monitoring.providers.cloudwatch import CloudWatchProvider
from shipyard.monitoring.watch import AlarmWatch

REGION = "us-east-1"

BASE = """\
project: gli
repos: {api: {path: ../api}}
environments: {prod: {branch: main}}
metrics:
  cw: {type: cloudwatch, region: us-east-1, endpoint_url: "ENDPOINT"}
  prom: {type: prometheus, url: "http://127.0.0.1:9"}
alarms:
  elb_5xx: {metric: AWS/ApplicationELB/HTTPCode_Target_5XX_Count, statistic: Sum, period: 60s,
            comparison: ">", threshold: 10, dimensions: {LoadBalancer: app/gli/1}}
services:
  api:
    repo: api
    run: serve --port {port}
    deploy:
      metrics: SOURCE
      alarms: [elb_5xx, {cloudwatch: api-5xx-high, poll: 1s}]
"""


@pytest.fixture(autouse=True)
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def _config(tmp_path: Path, endpoint: str, source: str = "cw", extra: str = "") -> Path:
    path = tmp_path / "shipyard.yaml"
    path.write_text(BASE.replace("ENDPOINT", endpoint).replace("SOURCE", source) + extra, encoding="utf-8")
    return path


def test_an_unknown_metric_source_is_named_with_its_line(tmp_path: Path) -> None:
    problems = check_text(BASE.replace("SOURCE", "datadog"), "shipyard.yaml", {})[1]
    assert [str(p) for p in problems] == [
        "shipyard.yaml:15: services.api.deploy.metrics: 'datadog': unknown metric source; define it under "
        "`metrics` (known: cw, prom)"]
    bad = check_text(BASE.replace("{cloudwatch: api-5xx-high, poll: 1s}", "{cloudwatch: ''}").replace(
        "SOURCE", "cw"), "shipyard.yaml",
                     {})[1]
    assert [str(p) for p in bad] == ["shipyard.yaml:16: services.api.deploy.alarms[1].cloudwatch: string should "
                                     "have at least 1 character (got )"]


def test_the_canary_judge_refuses_a_source_that_cannot_split_revisions(tmp_path: Path) -> None:
    judge = ("      strategy: {type: canary, steps: [{weight: 10, pause: 1s}]}\n"
             "      analysis: {metrics: [{metric: AWS/ApplicationELB/TargetResponseTime}]}\n")
    cfg = load_config(_config(tmp_path, "http://127.0.0.1:9", extra=judge))
    with pytest.raises(UsageError, match="cannot tell them apart: set its revision_dimension"):
        service_settings(cfg, tmp_path, "api", "prod")
    cfg = load_config(_config(tmp_path, "http://127.0.0.1:9", extra=judge).parent / "shipyard.yaml")
    cfg.metrics["cw"] = cfg.metrics["cw"].model_copy(update={"revision_dimension": "Revision"})
    assert service_settings(cfg, tmp_path, "api", "prod").analysis is not None


def test_settings_carry_the_source_and_both_kinds_of_alarm(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, "http://127.0.0.1:9", source="prom"))
    s = service_settings(cfg, tmp_path, "api", "prod")
    assert sorted(s.alarms) == ["cloudwatch:api-5xx-high", "elb_5xx"]
    assert isinstance(s.alarms["cloudwatch:api-5xx-high"], CloudWatchAlarmRef)
    provider = from_source(s.metrics, "api", "prod")
    assert isinstance(provider, Scoped) and provider.labels == {"service_env": "api/prod"}


async def test_a_cloudwatch_source_feeds_an_alarm_and_a_cloudwatch_alarm_is_read(tmp_path: Path,
                                                                                moto_endpoint: str) -> None:
    cfg = load_config(_config(tmp_path, moto_endpoint))
    s = service_settings(cfg, tmp_path, "api", "prod")
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto_endpoint)
    now = int(time.time()) // 60 * 60
    for dims, value in (({"LoadBalancer": "app/gli/1"}, 42.0), ({"LoadBalancer": "app/other/2"}, 1.0)):
        cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[{
            "MetricName": "HTTPCode_Target_5XX_Count", "Value": value, "Unit": "Count",
            "Timestamp": datetime.fromtimestamp(now - 60 + 5, UTC),
            "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]}])
    cw.put_metric_alarm(AlarmName="api-5xx-high", Namespace="AWS/ApplicationELB",
                        MetricName="HTTPCode_Target_5XX_Count", Statistic="Sum", Period=60, EvaluationPeriods=1,
                        Threshold=10, ComparisonOperator="GreaterThanThreshold")
    cw.set_alarm_state(AlarmName="api-5xx-high", StateValue="OK", StateReason="fine")
    provider = from_source(s.metrics, "api", "prod")
    assert isinstance(provider, CloudWatchProvider)
    # the revision label is shipyard's, no CloudWatch dimension: dropped, the alarm's dimensions kept
    assert provider.dimensions({"revision": "abc", "LoadBalancer": "app/gli/1"}) == [
        {"Name": "LoadBalancer", "Value": "app/gli/1"}]
    clock = [float(now + 5)]
    changes: list[tuple[str, str]] = []
    watch = AlarmWatch(s.alarms, provider, labels={"revision": "abc"}, clock=lambda: clock[0],
                       on_change=lambda name, _a, ev: changes.append((name, str(ev.state))))
    await watch.tick()
    assert watch.status["elb_5xx"].state is AlarmState.ALARM, watch.to_dict()["elb_5xx"]
    assert watch.status["cloudwatch:api-5xx-high"].state is AlarmState.OK
    cw.set_alarm_state(AlarmName="api-5xx-high", StateValue="ALARM", StateReason="Threshold Crossed")
    await watch.tick()                            # within `poll` of the last read: not read again
    assert watch.status["cloudwatch:api-5xx-high"].state is AlarmState.OK
    clock[0] += 1.0
    await watch.tick()
    assert watch.status["cloudwatch:api-5xx-high"].state is AlarmState.ALARM
    assert sorted(watch.firing()) == ["cloudwatch:api-5xx-high", "elb_5xx"]
    assert watch.reason("cloudwatch:api-5xx-high") == ("alarm cloudwatch:api-5xx-high in ALARM "
                                                       "(CloudWatch: Threshold Crossed)")
    assert ("cloudwatch:api-5xx-high", "ALARM") in changes and ("elb_5xx", "ALARM") in changes


async def test_an_unreachable_cloudwatch_keeps_the_state_and_says_why(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    ref = CloudWatchAlarmRef(cloudwatch="api-5xx-high", endpoint_url=dead, region=REGION, poll=1.0)
    watch = AlarmWatch({"cloudwatch:api-5xx-high": ref}, CloudWatchProvider(endpoint_url=dead, region=REGION))
    await watch.tick()
    status = watch.status["cloudwatch:api-5xx-high"]
    assert status.state is AlarmState.INSUFFICIENT_DATA and watch.firing() == []
    assert status.error is not None and status.error.startswith(
        "aws cloudwatch DescribeAlarms api-5xx-high: cannot reach"), status.error
    assert watch.unreadable() == ["cloudwatch:api-5xx-high"]
    ignored = AlarmWatch({"x": ref.model_copy(update={"ignore_poll_failure": True})},
                         CloudWatchProvider(endpoint_url=dead, region=REGION))
    await ignored.tick()
    assert ignored.unreadable() == []
