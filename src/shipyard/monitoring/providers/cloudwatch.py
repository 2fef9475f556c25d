"""Metrics from AWS CloudWatch through boto3's GetMetricData (tests use moto in server mode).

`metric` is "Namespace/MetricName" (e.g. "AWS/ApplicationELB/HTTPCode_Target_5XX_Count"; the last
path segment is the name); labels become dimensions. CloudWatch aggregates per period itself, so each
returned value is already one period's statistic (`stat`, default Average).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from shipyard.errors import MonitoringError
from shipyard.monitoring.base import Sample, Window


class CloudWatchProvider:
    def __init__(self, *, region: str | None = None, endpoint_url: str | None = None, stat: str = "Average",
                 client: Any = None) -> None:
        self.region, self.endpoint_url, self.stat, self._client = region, endpoint_url, stat, client

    def client(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("cloudwatch", region_name=self.region, endpoint_url=self.endpoint_url)
        return self._client

    def _fetch(self, metric: str, window: Window, labels: dict[str, str] | None) -> list[Sample]:
        namespace, _, name = metric.rpartition("/")
        if not namespace:
            raise MonitoringError(f"cloudwatch metric {metric!r}: use Namespace/MetricName")
        dims = [{"Name": k, "Value": v} for k, v in (labels or {}).items()]
        query = {"Id": "m0", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dims},
            "Period": max(1, int(window.step)), "Stat": self.stat}}
        out: list[Sample] = []
        token: str | None = None
        try:
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
        except MonitoringError:
            raise
        except Exception as exc:  # botocore's errors, mapped at the boundary
            raise MonitoringError(f"cloudwatch GetMetricData failed for {metric}: {exc}") from exc
        return sorted(out, key=lambda s: s.at)

    async def query(self, metric: str, window: Window, *, labels: dict[str, str] | None = None) -> list[Sample]:
        return await asyncio.to_thread(self._fetch, metric, window, labels)
