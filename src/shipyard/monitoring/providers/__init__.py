"""Metric providers: built-in router counters, Prometheus, CloudWatch and a generic HTTP JSON endpoint."""

from __future__ import annotations

from typing import Any

from shipyard.monitoring.base import MetricProvider, Sample, Window
from shipyard.monitoring.providers.router import ROUTER_METRICS, RouterProvider

__all__ = ["ROUTER_METRICS", "RouterProvider", "Scoped", "from_source"]


class Scoped:
    """A provider whose queries always carry some labels (the service/env a Prometheus query is about)."""

    def __init__(self, inner: MetricProvider, labels: dict[str, str]) -> None:
        self.inner, self.labels = inner, dict(labels)
        self.per_revision = bool(getattr(inner, "per_revision", True))

    async def query(self, metric: str, window: Window, *, labels: dict[str, str] | None = None) -> list[Sample]:
        return await self.inner.query(metric, window, labels={**self.labels, **(labels or {})})


def from_source(source: Any, service: str, env: str) -> MetricProvider:
    """The provider for a configured metric source (config.alerting.MetricSource) of one (service, env)."""
    if source.type == "prometheus":
        from shipyard.monitoring.providers.prometheus import PrometheusProvider

        prom = PrometheusProvider(source.url, queries=dict(source.queries), timeout=float(source.timeout))
        return Scoped(prom, {"service_env": f"{service}/{env}"})   # the router names its series so
    if source.type == "cloudwatch":
        from shipyard.monitoring.providers.cloudwatch import CloudWatchProvider

        return CloudWatchProvider(region=source.region, endpoint_url=source.endpoint_url,
                                  revision_dimension=source.revision_dimension)
    raise ValueError(f"unknown metric source type {source.type!r}")
