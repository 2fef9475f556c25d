"""Metric providers against real servers: Prometheus (the Debian package) scraping a live router's
/metrics over TCP, CloudWatch through boto3 against moto in server mode, and an HTTP JSON endpoint.
Under CI=true a missing prometheus binary is a failure, never a skip."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import pytest
from aiohttp import web

from shipyard.errors import MonitoringError
from shipyard.monitoring.base import Window
from shipyard.monitoring.providers.cloudwatch import CloudWatchProvider
from shipyard.monitoring.providers.http import HttpJsonProvider
from shipyard.monitoring.providers.prometheus import PrometheusProvider
from shipyard.proxy import Backend, RouterServer, render_prometheus
from shipyard.testing.receivers import free_port
from shipyard.testing.servers import missing_server

REGION = "ap-northeast-2"


def _prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
    if found:
        return found
    missing_server("the prometheus binary is missing (scripts/bootstrap installs it)")


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture
async def live_router() -> AsyncIterator[tuple[RouterServer, int]]:
    """A router with two revisions behind it (the new one fails 50%), its /metrics on a TCP port."""
    count = {"n": 0}

    async def good(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def flaky(request: web.Request) -> web.Response:
        count["n"] += 1
        return web.Response(status=500 if count["n"] % 2 else 200)

    ports = [free_port(), free_port()]
    apps = []
    for handler, port in zip((good, flaky), ports, strict=True):
        app = web.Application()
        app.router.add_get("/", handler)
        apps.append(await _serve(app, port))
    router = RouterServer("api/prod", "127.0.0.1:0")
    await router.start()
    router.set_backends([Backend(f"127.0.0.1:{ports[0]}", 50, "old", "i-old"),
                         Backend(f"127.0.0.1:{ports[1]}", 50, "new", "i-new")])

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=render_prometheus([router]), content_type="text/plain")

    mapp = web.Application()
    mapp.router.add_get("/metrics", metrics)
    mport = free_port()
    apps.append(await _serve(mapp, mport))
    yield router, mport
    await router.close()
    for runner in apps:
        await runner.cleanup()


async def test_prometheus_scrapes_the_router_and_answers_promql(
        tmp_path: Path, live_router: tuple[RouterServer, int]) -> None:
    binary = _prometheus_binary()
    router, mport = live_router
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                   "scrape_configs:\n  - job_name: shipyard\n    static_configs:\n"
                   f"      - targets: ['127.0.0.1:{mport}']\n")
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        provider = PrometheusProvider(url, rate_range="5s")
        t0 = time.time()
        deadline = time.monotonic() + 40
        samples = []
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                for _ in range(20):
                    await client.get(f"http://{router.listen}/")
                await asyncio.sleep(0.2)
                if time.time() - t0 < 4:
                    continue
                try:
                    samples = await provider.query("http_5xx_ratio", Window(t0, time.time(), 1),
                                                   labels={"revision": "new"})
                except MonitoringError:
                    continue       # prometheus still starting
                if len(samples) >= 2:
                    break
        assert len(samples) >= 2, "prometheus never returned the router's series"
        assert all(0.3 <= s.value <= 0.7 for s in samples[-2:])
        old = await provider.query("http_5xx_ratio", Window(t0, time.time(), 1), labels={"revision": "old"})
        assert old and all(s.value == 0 for s in old)
        rate = await provider.query('sum(rate(shipyard_router_requests_total{revision="old"}[5s]))',
                                    Window(t0, time.time(), 1))
        assert rate and rate[-1].value > 0
        with pytest.raises(MonitoringError, match="prometheus query failed"):
            await provider.query("sum(", Window(t0, time.time(), 1))
    finally:
        proc.terminate()
        proc.wait(10)


async def test_cloudwatch_get_metric_data_through_moto(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    cw = boto3.client("cloudwatch", region_name=REGION, endpoint_url=moto_endpoint)
    now = int(time.time()) // 60 * 60
    for i, value in enumerate((1.0, 3.0, 12.0)):
        cw.put_metric_data(Namespace="AWS/ApplicationELB", MetricData=[{
            "MetricName": "HTTPCode_Target_5XX_Count", "Value": value, "Unit": "Count",
            "Timestamp": datetime.fromtimestamp(now - 180 + i * 60 + 5, UTC),
            "Dimensions": [{"Name": "LoadBalancer", "Value": "app/tpt/1"}]}])
    provider = CloudWatchProvider(region=REGION, endpoint_url=moto_endpoint, stat="Sum")
    samples = await provider.query("AWS/ApplicationELB/HTTPCode_Target_5XX_Count", Window(now - 300, now + 60, 60),
                                   labels={"LoadBalancer": "app/tpt/1"})
    assert sorted(s.value for s in samples) == [1.0, 3.0, 12.0]
    with pytest.raises(MonitoringError, match="Namespace/MetricName"):
        await provider.query("JustAName", Window(now - 60, now, 60))


async def test_http_json_provider() -> None:
    async def handler(request: web.Request) -> web.Response:
        if request.query["metric"] == "bad":
            return web.json_response({"samples": [{"nope": 1}]})
        start = float(request.query["start"])
        return web.json_response({"samples": [{"at": start + 1, "value": 0.25, "labels": {"revision": "r"}},
                                              {"at": start + 2, "value": 0.5}]})

    app = web.Application()
    app.router.add_get("/m", handler)
    port = free_port()
    runner = await _serve(app, port)
    try:
        p = HttpJsonProvider(f"http://127.0.0.1:{port}/m")
        samples = await p.query("error_rate", Window(100, 200, 10), labels={"revision": "r"})
        assert [s.value for s in samples] == [0.25, 0.5] and samples[0].labels == {"revision": "r"}
        with pytest.raises(MonitoringError, match="unexpected shape"):
            await p.query("bad", Window(100, 200, 10))
    finally:
        await runner.cleanup()
    with pytest.raises(MonitoringError, match="failed"):
        await HttpJsonProvider(f"http://127.0.0.1:{port}/m").query("x", Window(0, 1))
