"""Metrics from Prometheus via PromQL over its HTTP API (`/api/v1/query_range`).

`metric` is either a name in `queries` (a PromQL template) or raw PromQL; `{revision}`, `{instance}`,
`{service_env}` and `{step}` in the template are filled from the labels and the window, so one alarm
definition works for canary and baseline. The default templates read the built-in router's series
(`shipyard_router_*`, exported by the agent's /metrics), so the same metric names as the router
provider work once Prometheus scrapes the agent.
"""

from __future__ import annotations

import math
import re
from typing import Any

import httpx

from shipyard.errors import MonitoringError
from shipyard.monitoring.base import Sample, Window

_SEL = 'service_env=~"{service_env}",revision=~"{revision}"'
DEFAULT_QUERIES = {
    "request_rate": f"sum(rate(shipyard_router_requests_total{{{_SEL}}}[{{range}}]))",
    "http_5xx_ratio": (f'sum(rate(shipyard_router_responses_total{{{_SEL},code="5xx"}}[{{range}}])) / '
                       f"sum(rate(shipyard_router_requests_total{{{_SEL}}}[{{range}}]))"),
    "error_rate": (f'sum(rate(shipyard_router_responses_total{{{_SEL},code="5xx"}}[{{range}}])) / '
                   f"sum(rate(shipyard_router_requests_total{{{_SEL}}}[{{range}}]))"),
    "http_5xx_count": f'sum(increase(shipyard_router_responses_total{{{_SEL},code="5xx"}}[{{range}}]))',
    "latency_p95": (f"histogram_quantile(0.95, sum by (le) (rate("
                    f"shipyard_router_request_duration_seconds_bucket{{{_SEL}}}[{{range}}])))"),
    "latency_p99": (f"histogram_quantile(0.99, sum by (le) (rate("
                    f"shipyard_router_request_duration_seconds_bucket{{{_SEL}}}[{{range}}])))"),
}


_PLACEHOLDER = re.compile(r"\{(revision|instance|service_env|range|step)\}")


class PrometheusProvider:
    def __init__(self, url: str, *, queries: dict[str, str] | None = None, timeout: float = 10.0,
                 rate_range: str = "30s") -> None:
        self.url = url.rstrip("/")
        self.queries = {**DEFAULT_QUERIES, **(queries or {})}
        self.timeout, self.rate_range = timeout, rate_range

    def promql(self, metric: str, window: Window, labels: dict[str, str] | None = None) -> str:
        """The PromQL sent: a named template with its placeholders filled (unset labels match anything)."""
        if metric not in self.queries:
            return metric
        values = {**(labels or {}), "range": self.rate_range, "step": f"{window.step:g}s"}
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ".*"), self.queries[metric])

    async def query(self, metric: str, window: Window, *, labels: dict[str, str] | None = None) -> list[Sample]:
        q = self.promql(metric, window, labels)
        params: dict[str, Any] = {"query": q, "start": window.start, "end": window.end,
                                  "step": max(1.0, window.step)}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.get(f"{self.url}/api/v1/query_range", params=params)
        except httpx.HTTPError as exc:
            raise MonitoringError(f"prometheus at {self.url} unreachable: {exc}") from exc
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200 or body.get("status") != "success":
            raise MonitoringError(f"prometheus query failed ({resp.status_code}): {body.get('error', resp.text[:200])}"
                                  f" for {q}")
        out: list[Sample] = []
        for series in body["data"]["result"]:
            tags = {k: str(v) for k, v in series.get("metric", {}).items()}
            for at, raw in series.get("values", []):
                value = float(raw)
                if not math.isnan(value) and not math.isinf(value):
                    out.append(Sample(float(at), value, tags))
        return sorted(out, key=lambda s: s.at)

