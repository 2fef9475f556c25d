"""Metrics and alarm states from AWS CloudWatch through boto3 (tests use moto in server mode).

`metric` is "Namespace/MetricName" (e.g. "AWS/ApplicationELB/HTTPCode_Target_5XX_Count"; the last
path segment is the name); an alarm's `dimensions` become the query's dimensions. CloudWatch aggregates per
period itself, so each returned value is already one period's statistic (`stat`, default Average).

shipyard's own labels (revision, instance, service_env) are no CloudWatch dimensions: they are dropped,
except the revision when `revision_dimension` names the dimension that carries it (an app publishing
its metrics per revision). Without it the source cannot tell canary from baseline, so the canary judge
refuses it (engine/settings.py) rather than compare a series with itself and pass.

`CloudWatchAlarmStates` reads the state of alarms CloudWatch evaluates itself (DescribeAlarms), the
rollback trigger CodeDeploy uses: shipyard does not recompute them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from shipyard.aws import AwsSettings, calling, client
from shipyard.errors import MonitoringError
from shipyard.monitoring.base import Sample, Window

OWN_LABELS = frozenset({"revision", "instance", "service_env"})


class CloudWatchProvider:
    def __init__(self, *, region: str | None = None, endpoint_url: str | None = None, stat: str = "Average",
                 revision_dimension: str | None = None, client: Any = None) -> None:
        self.settings, self.stat = AwsSettings(region, endpoint_url), stat
        self.revision_dimension, self._client = revision_dimension, client

    @property
    def per_revision(self) -> bool:
        """Whether a query can be restricted to one revision (what the canary judge needs)."""
        return self.revision_dimension is not None

    def client(self) -> Any:
        if self._client is None:
            self._client = client("cloudwatch", self.settings, error=MonitoringError)
        return self._client

    def dimensions(self, labels: dict[str, str] | None) -> list[dict[str, str]]:
        dims = {k: v for k, v in (labels or {}).items() if k not in OWN_LABELS}
        revision = (labels or {}).get("revision")
        if self.revision_dimension and revision:
            dims[self.revision_dimension] = revision
        return [{"Name": k, "Value": v} for k, v in sorted(dims.items())]

    def _fetch(self, metric: str, window: Window, labels: dict[str, str] | None) -> list[Sample]:
        namespace, _, name = metric.rpartition("/")
        if not namespace:
            raise MonitoringError(f"cloudwatch metric {metric!r}: use Namespace/MetricName")
        query = {"Id": "m0", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": self.dimensions(labels)},
            "Period": max(1, int(window.step)), "Stat": self.stat}}
        out: list[Sample] = []
        token: str | None = None
        with calling("cloudwatch", "GetMetricData", metric, error=MonitoringError):
            while True:
                kwargs: dict[str, Any] = {"MetricDataQueries": [query],
                                          "StartTime": datetime.fromtimestamp(window.start, UTC),
                                          "EndTime": datetime.fromtimestamp(window.end, UTC),
                                          "ScanBy": "TimestampAscending"}
                if token:
                    kwargs["NextToken"] = token
                resp = self.client().get_metric_data(**kwargs)
                for result in resp.get("MetricDataResults", []):
                    for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                        out.append(Sample(ts.timestamp(), float(value), dict(labels or {})))
                token = resp.get("NextToken")
                if not token:
                    break
        return sorted(out, key=lambda s: s.at)

    async def query(self, metric: str, window: Window, *, labels: dict[str, str] | None = None) -> list[Sample]:
        return await asyncio.to_thread(self._fetch, metric, window, labels)


class CloudWatchAlarmStates:
    """The state CloudWatch gives its own alarms, one client per (region, endpoint)."""

    def __init__(self, *, client: Any = None) -> None:
        self._clients: dict[AwsSettings, Any] = {}
        self._given = client

    def _client(self, settings: AwsSettings) -> Any:
        if self._given is not None:
            return self._given
        if settings not in self._clients:
            self._clients[settings] = client("cloudwatch", settings, error=MonitoringError)
        return self._clients[settings]

    def _read(self, name: str, settings: AwsSettings) -> tuple[str, str]:
        with calling("cloudwatch", "DescribeAlarms", name, error=MonitoringError):
            resp = self._client(settings).describe_alarms(AlarmNames=[name])
        found = [*resp.get("MetricAlarms", []), *resp.get("CompositeAlarms", [])]
        if not found:
            raise MonitoringError(f"aws cloudwatch DescribeAlarms {name}: no such alarm")
        alarm = found[0]
        return str(alarm.get("StateValue", "INSUFFICIENT_DATA")), " ".join(str(alarm.get("StateReason", "")).split())

    async def read(self, name: str, settings: AwsSettings) -> tuple[str, str]:
        """(StateValue, StateReason) of the alarm `name`; MonitoringError when it cannot be read or is absent."""
        return await asyncio.to_thread(self._read, name, settings)
