"""The router provider turns cumulative counters into per-interval rates and ratios, per revision/instance."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.errors import MonitoringError
from shipyard.monitoring.base import Window
from shipyard.monitoring.providers.router import RouterProvider, histogram_quantile


def _c(requests: int, e5: int = 0, lat: float = 0.01) -> dict[str, Any]:
    b = {"0.005": 0, "0.01": requests, "0.1": requests, "+Inf": requests} if lat <= 0.01 else \
        {"0.005": 0, "0.01": 0, "0.1": requests, "+Inf": requests}
    return {"requests": requests, "2xx": requests - e5, "5xx": e5, "4xx": 0, "errors": 0,
            "latency_sum": requests * lat, "latency_count": requests, "latency_buckets": b}


class Script:
    def __init__(self, frames: list[dict[str, Any]]) -> None:
        self.frames, self.now = frames, 0.0

    async def stats(self) -> dict[str, Any]:
        frame = self.frames.pop(0) if len(self.frames) > 1 else self.frames[0]  # then steady
        self.now += 10
        return frame

    def clock(self) -> float:
        return self.now


def _frame(old: int, new: int, new5: int) -> dict[str, Any]:
    return {"backends": [{"address": "127.0.0.1:1", "revision": "old", "instance": "i-1", "weight": 90},
                         {"address": "127.0.0.1:2", "revision": "new", "instance": "i-2", "weight": 10}],
            "per_revision": {"old": _c(old), "new": _c(new, new5, 0.05)},
            "per_backend": {"127.0.0.1:1": _c(old), "127.0.0.1:2": _c(new, new5, 0.05)}}


async def test_rates_and_ratios_per_revision_and_instance() -> None:
    script = Script([_frame(0, 0, 0), _frame(100, 10, 1), _frame(300, 30, 11), _frame(300, 30, 11)])
    p = RouterProvider(script.stats, clock=script.clock)
    w = Window(0, 100, 10)
    await p.collect()
    assert [s.value for s in await p.query("http_5xx_ratio", w, labels={"revision": "new"})] == [0.1]
    vals = [s.value for s in await p.query("http_5xx_ratio", w, labels={"instance": "i-2"})]
    assert vals == [0.1, 0.5]
    rates = await p.query("request_rate", w, labels={"revision": "old"})
    assert [s.value for s in rates] == [10.0, 20.0, 0.0]
    # no requests in the last interval: a ratio is missing data, not zero
    assert len(await p.query("error_rate", w, labels={"revision": "new"})) == 2
    assert [s.value for s in await p.query("http_5xx_count", w)][:2] == [1.0, 10.0]
    p95 = await p.query("latency_p95", w, labels={"revision": "new"})
    assert 0.01 < p95[0].value <= 0.1
    hh = await p.query("healthy_hosts", w, labels={"revision": "new"})
    assert {s.value for s in hh} == {1.0}


async def test_unknown_metric_and_unreachable_router_are_monitoring_errors() -> None:
    async def broken() -> dict[str, Any]:
        raise OSError("agent gone")

    with pytest.raises(MonitoringError, match="unknown router metric"):
        await RouterProvider(broken).query("cpu", Window(0, 1))
    with pytest.raises(MonitoringError, match="agent gone"):
        await RouterProvider(broken).query("request_rate", Window(0, 1))


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    assert histogram_quantile(0.5, {"0.1": 0, "0.2": 10, "+Inf": 10}) == pytest.approx(0.15)
    assert histogram_quantile(0.99, {"0.1": 5, "+Inf": 10}) == 0.1
    assert histogram_quantile(0.5, {"+Inf": 0}) is None
