"""Metrics from the built-in router's counters (via the agent's stats), per revision or per instance.

The router's counters are cumulative since it started, so this provider keeps timestamped snapshots and
turns each pair of consecutive snapshots into one sample of a rate or ratio over that interval. Every
`query` first takes a fresh snapshot, so a caller that polls (the Analyze step, `shipyard watch`) builds
up the history it needs; periods before the first snapshot are simply missing data.

Metrics (the names alarms use):
  request_rate (req/s), request_count, http_5xx_count, http_4xx_count, http_5xx_ratio, http_4xx_ratio,
  error_rate (failed requests / requests: with this router every failure reaches the client as a 5xx,
  including proxy-generated 502/504), proxy_errors (connection failures, retried or not),
  latency_avg, latency_p50, latency_p90, latency_p95, latency_p99 (seconds, from the histogram deltas),
  healthy_hosts (backends with weight > 0, a gauge).
Labels: {"revision": sha} restricts to one revision (canary vs baseline), {"instance": address or id}
to one backend; no labels sums everything.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from shipyard.errors import MonitoringError
from shipyard.monitoring.base import Sample, Window

StatsFn = Callable[[], Awaitable[dict[str, Any]]]
ROUTER_METRICS = ("request_rate", "request_count", "http_5xx_count", "http_4xx_count", "http_5xx_ratio",
                  "http_4xx_ratio", "error_rate", "proxy_errors", "latency_avg", "latency_p50", "latency_p90",
                  "latency_p95", "latency_p99", "healthy_hosts")
KEEP_SNAPSHOTS = 2000


@dataclass(frozen=True)
class Snapshot:
    at: float
    stats: dict[str, Any]


def _counters(stats: dict[str, Any], labels: dict[str, str] | None) -> dict[str, Any] | None:
    """The cumulative counters for the series `labels` selects (summed when several match)."""
    labels = labels or {}
    if "revision" in labels:
        picked = [stats.get("per_revision", {}).get(labels["revision"])]
    elif "instance" in labels:
        want = labels["instance"]
        addresses = {b["address"] for b in [*stats.get("backends", []), *stats.get("retired", [])]
                     if want in (b.get("address"), b.get("instance"))} or {want}
        picked = [stats.get("per_backend", {}).get(a) for a in addresses]
    else:
        picked = list(stats.get("per_revision", {}).values())
    found = [c for c in picked if c]
    if not found:
        return None
    total: dict[str, Any] = {"requests": 0, "4xx": 0, "5xx": 0, "errors": 0, "latency_sum": 0.0,
                             "latency_count": 0, "latency_buckets": {}}
    for c in found:
        for key in ("requests", "4xx", "5xx", "errors", "latency_sum", "latency_count"):
            total[key] += c.get(key, 0)
        for bound, n in c.get("latency_buckets", {}).items():
            total["latency_buckets"][bound] = total["latency_buckets"].get(bound, 0) + n
    return total


def histogram_quantile(q: float, buckets: dict[str, float]) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets (linear inside the bucket)."""
    items = sorted(((math.inf if b == "+Inf" else float(b)), n) for b, n in buckets.items())
    if not items or items[-1][1] <= 0:
        return None
    rank = q * items[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in items:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _value(metric: str, a: dict[str, Any], b: dict[str, Any], seconds: float) -> float | None:
    d = {k: b[k] - a[k] for k in ("requests", "4xx", "5xx", "errors", "latency_sum", "latency_count")}
    if d["requests"] < 0:       # the router restarted: counters went back to zero
        return None
    if metric == "request_rate":
        return d["requests"] / seconds if seconds > 0 else None
    if metric == "request_count":
        return float(d["requests"])
    if metric in ("http_5xx_count", "http_4xx_count"):
        return float(d[metric[5:8]])
    if metric == "proxy_errors":
        return float(d["errors"])
    if d["requests"] == 0:
        return None             # a ratio of nothing is missing data, not 0 (treat_missing_data decides)
    if metric in ("http_5xx_ratio", "error_rate"):
        return d["5xx"] / d["requests"]
    if metric == "http_4xx_ratio":
        return d["4xx"] / d["requests"]
    if metric == "latency_avg":
        return d["latency_sum"] / d["latency_count"] if d["latency_count"] else None
    if metric.startswith("latency_p"):
        delta = {k: b["latency_buckets"].get(k, 0) - a["latency_buckets"].get(k, 0) for k in b["latency_buckets"]}
        return histogram_quantile(float(metric[9:]) / 100.0, delta)
    raise MonitoringError(f"unknown router metric {metric!r} (known: {', '.join(ROUTER_METRICS)})")


class RouterProvider:
    """Samples from the built-in router of one (service, env); `stats` is e.g. `BuiltinRouter.stats`."""

    def __init__(self, stats: StatsFn, *, clock: Callable[[], float] = time.time) -> None:
        self._stats, self._clock = stats, clock
        self.snapshots: list[Snapshot] = []

    async def collect(self) -> Snapshot:
        """Take one snapshot now (query does this too; call it to start the history early)."""
        try:
            stats = await self._stats()
        except Exception as exc:
            raise MonitoringError(f"router stats unavailable: {exc}") from exc
        snap = Snapshot(self._clock(), stats)
        self.snapshots.append(snap)
        del self.snapshots[:-KEEP_SNAPSHOTS]
        return snap

    async def query(self, metric: str, window: Window, *, labels: dict[str, str] | None = None) -> list[Sample]:
        if metric not in ROUTER_METRICS:
            raise MonitoringError(f"unknown router metric {metric!r} (known: {', '.join(ROUTER_METRICS)})")
        await self.collect()
        out: list[Sample] = []
        tag = dict(labels or {})
        if metric == "healthy_hosts":
            for snap in self.snapshots:
                if window.start <= snap.at < window.end:
                    out.append(Sample(snap.at, float(_healthy(snap.stats, labels)), tag))
            return out
        for a, b in zip(self.snapshots, self.snapshots[1:], strict=False):
            if not window.start <= b.at < window.end:
                continue
            ca, cb = _counters(a.stats, labels), _counters(b.stats, labels)
            if cb is None:
                continue
            ca = ca or {**{k: 0 for k in cb}, "latency_buckets": {}}
            value = _value(metric, ca, cb, b.at - a.at)
            if value is not None:
                out.append(Sample(b.at, value, tag))
        return out


def _healthy(stats: dict[str, Any], labels: dict[str, str] | None) -> int:
    rev = (labels or {}).get("revision")
    return sum(1 for b in stats.get("backends", []) if b.get("weight", 0) > 0 and (rev is None or b["revision"] == rev))
