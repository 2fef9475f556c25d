"""The load generator against real servers on real ports (small, bounded load)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from shipyard.demo.load import LoadRunner, run_load
from shipyard.ipc import free_port

APPS = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "demo" / "apps"




class Counts:
    def __init__(self) -> None:
        self.requests = 0
        self.close_header = 0
        self.flaky = 0


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Counts]]:
    """A plain aiohttp server in the test's loop: cheap, and it can count what it saw."""
    counts = Counts()

    async def ok(request: web.Request) -> web.Response:
        counts.requests += 1
        if request.headers.get("Connection", "").lower() == "close":
            counts.close_header += 1
        return web.Response(text="ok")

    async def flaky(request: web.Request) -> web.Response:
        counts.flaky += 1
        return web.Response(status=500 if counts.flaky % 4 == 0 else 200)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text="slow")

    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/flaky", flaky)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", counts
    await runner.cleanup()


async def test_steady_rate_no_failures(server: tuple[str, Counts]) -> None:
    base, counts = server
    t0 = time.monotonic()
    result = await run_load(base + "/", rps=100, duration=2.0)
    elapsed = time.monotonic() - t0
    # Scheduled by time: exactly ceil(rps * duration) requests, spread over the duration.
    assert result.total == 200
    assert result.failed == 0, result.summary()
    assert result.by_status == {200: 200}
    assert result.errors == {} and result.failures == []
    assert counts.requests == 200
    assert counts.close_header == 100  # keepalive_share=0.5: half open a fresh connection
    assert 1.9 <= elapsed < 2.0 + 3.0
    assert result.p50_ms is not None and result.p99_ms is not None
    assert 0 < result.p50_ms <= result.p99_ms


async def test_keepalive_share_extremes(server: tuple[str, Counts]) -> None:
    base, counts = server
    await run_load(base + "/", rps=50, duration=0.4, keepalive_share=1.0)
    assert (counts.requests, counts.close_header) == (20, 0)
    await run_load(base + "/", rps=50, duration=0.4, keepalive_share=0.0)
    assert (counts.requests, counts.close_header) == (40, 20)


async def test_server_errors_counted(server: tuple[str, Counts]) -> None:
    base, _ = server
    result = await run_load(base + "/flaky", rps=50, duration=1.0)
    assert result.total == 50
    assert result.by_status == {200: 38, 500: 12}
    assert result.failed == 12
    assert result.errors == {}
    assert len(result.failures) == 12
    assert all(reason == "http 500" for _, reason in result.failures)
    assert all(result.started_at <= t <= result.ended_at for t, _ in result.failures)
    assert result.first_failure_at is not None and result.last_failure_at is not None
    assert result.first_failure_at < result.last_failure_at


async def test_closed_port_all_fail_promptly() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    t0 = time.monotonic()
    result = await run_load(url, rps=50, duration=1.0, timeout=5.0)
    elapsed = time.monotonic() - t0
    assert result.total == 50
    assert result.failed == 50
    assert result.errors == {"connect": 50}
    assert result.by_status == {}
    assert result.p50_ms is None
    assert elapsed < 1.0 + 2.0  # refused connections do not wait for the timeout


async def test_timeouts(server: tuple[str, Counts]) -> None:
    base, _ = server
    t0 = time.monotonic()
    result = await run_load(base + "/slow?s=5", rps=20, duration=0.5, timeout=0.3)
    assert result.total == 10
    assert result.errors == {"timeout": 10}
    assert time.monotonic() - t0 < 0.5 + 0.3 + 2.0


async def test_overload_counted_not_queued(server: tuple[str, Counts]) -> None:
    base, _ = server
    result = await run_load(base + "/slow?s=0.5", rps=40, duration=0.25, max_concurrency=3)
    assert result.total == 10
    assert result.errors.get("overload", 0) == 7
    assert result.by_status == {200: 3}


async def test_stop_event_ends_run(server: tuple[str, Counts]) -> None:
    base, counts = server
    stop = asyncio.Event()
    task = asyncio.create_task(run_load(base + "/", rps=100, duration=None, stop=stop))
    t0 = time.monotonic()
    while counts.requests < 20:
        assert time.monotonic() - t0 < 10, "load never arrived"
        await asyncio.sleep(0.01)
    stop.set()
    result = await asyncio.wait_for(task, 5)
    assert result.total >= 20 and result.failed == 0
    assert result.total == counts.requests


@pytest.fixture
def api_process(tmp_path: Path) -> Iterator[str]:
    """The demo api app as a separate process, so a synchronous test can drive LoadRunner against it."""
    (tmp_path / "VERSION").write_text("9.9.9\n")
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, str(APPS / "api" / "app.py")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.monotonic()
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "api app exited"
                assert time.monotonic() - t0 < 15, "api app did not listen"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


def test_load_runner_from_sync_code(api_process: str) -> None:
    runner = LoadRunner(api_process + "/version", rps=50).start()
    t0 = time.monotonic()
    while runner.snapshot().total < 25:
        assert runner.running
        assert time.monotonic() - t0 < 15, "no progress"
        time.sleep(0.02)
    result = runner.stop(timeout=15)
    assert not runner.running
    assert result.total >= 25
    assert result.failed == 0, result.summary()
    assert result.by_status == {200: result.total}


def test_load_runner_with_duration_and_context_manager(api_process: str) -> None:
    with LoadRunner(api_process + "/", rps=40, duration=0.5) as runner:
        result = runner.wait(timeout=15)  # ends by itself after the duration
    assert result.total == 20 and result.failed == 0
    assert runner.stop() is result  # stopping a finished run just returns its result
    with LoadRunner(api_process + "/", rps=40) as runner:
        pass  # leaving the block stops the run
    assert not runner.running


def test_load_runner_rejects_bad_arguments_eagerly() -> None:
    with pytest.raises(ValueError, match="rps"):
        LoadRunner("http://127.0.0.1:1/", rps=0)


def test_load_runner_reraises_errors_from_its_thread() -> None:
    runner = LoadRunner("http://127.0.0.1:1/", rps=10, max_concurrency="many").start()
    with pytest.raises(TypeError):
        runner.stop(timeout=10)
