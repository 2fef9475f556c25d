"""Pure parts of the load generator: result bookkeeping, percentiles, error names, argument checks."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from shipyard.demo import load
from shipyard.demo.load import LoadResult, Recorder, classify_error, percentile, run_load


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_classify_error() -> None:
    assert classify_error(TimeoutError()) == "timeout"
    assert classify_error(aiohttp.ServerTimeoutError()) == "timeout"
    assert classify_error(aiohttp.ServerDisconnectedError()) == "disconnected"
    assert classify_error(ConnectionResetError()) == "reset"
    assert classify_error(aiohttp.ClientPayloadError()) == "payload"
    assert classify_error(RuntimeError()) == "RuntimeError"


def test_recorder_counts_and_caps_failures() -> None:
    rec = Recorder(offered_rps=10)
    rec.response(200, 0.010)
    rec.response(503, 0.020)
    for _ in range(load.MAX_FAILURES_KEPT + 50):
        rec.error("connect", "refused")
    result = rec.snapshot()
    assert result.total == 2 + load.MAX_FAILURES_KEPT + 50
    assert result.failed == 1 + load.MAX_FAILURES_KEPT + 50
    assert result.by_status == {200: 1, 503: 1}
    assert result.errors == {"connect": load.MAX_FAILURES_KEPT + 50}
    assert len(result.failures) == load.MAX_FAILURES_KEPT
    assert result.failures[0][1] == "http 503"
    assert result.failures[1][1] == "connect: refused"
    assert result.first_failure_at is not None and result.last_failure_at is not None
    assert result.first_failure_at <= result.last_failure_at
    assert result.p50_ms == pytest.approx(10.0) and result.p99_ms == pytest.approx(20.0)


def test_redirect_is_a_failure() -> None:
    rec = Recorder(offered_rps=1)
    rec.response(302, 0.001)
    assert rec.snapshot().failed == 1


def test_result_properties_and_json() -> None:
    result = LoadResult(total=10, failed=2, by_status={200: 8, 500: 2}, failures=[(1.5, "http 500")],
                        started_at=100.0, ended_at=102.5, offered_rps=4.0, p50_ms=1.0, p99_ms=2.0)  # fmt: skip
    assert result.succeeded == 8
    assert result.duration == 2.5
    assert result.error_ratio == 0.2
    data = json.loads(json.dumps(result.to_dict()))
    assert data["by_status"] == {"200": 8, "500": 2}
    assert data["failures"] == [[1.5, "http 500"]]
    assert data["succeeded"] == 8
    assert "10 requests" in result.summary() and "2 failed" in result.summary()
    assert LoadResult().error_ratio == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rps": 0, "duration": 1.0}, "rps"),
        ({"rps": 10, "duration": None}, "duration or a stop"),
        ({"rps": 10, "duration": 1.0, "keepalive_share": 1.5}, "keepalive_share"),
    ],
)
async def test_run_load_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        await run_load("http://127.0.0.1:1/", **kwargs)  # type: ignore[arg-type]


def test_new_event_loop_works() -> None:
    loop = load.new_event_loop()
    try:
        assert loop.run_until_complete(asyncio.sleep(0, result=5)) == 5
    finally:
        loop.close()
