"""The demo example apps as real processes on real ports: the behaviour deploy tests rely on."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from shipyard.ipc import free_port

APPS = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "demo" / "apps"
START_DEADLINE = 15.0  # generous: the box may be busy; a healthy start takes ~0.3 s




@dataclass
class App:
    proc: subprocess.Popen[bytes]
    port: int
    cwd: Path
    log: Path
    startup_s: float = 0.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def wait_http(url: str, proc: subprocess.Popen[bytes], deadline: float = START_DEADLINE) -> float:
    """Poll until `url` answers at all (any status); return seconds taken. Fails fast if proc died."""
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"process exited early with {proc.returncode}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    await resp.read()
                    return time.monotonic() - t0
            except (TimeoutError, aiohttp.ClientError):
                pass
            if time.monotonic() - t0 > deadline:
                pytest.fail(f"{url} did not answer within {deadline}s")
            await asyncio.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


async def start_api(tmp_path: Path, version: str = "1.2.3", **env: str) -> App:
    cwd = tmp_path / "api"
    cwd.mkdir(exist_ok=True)
    (cwd / "VERSION").write_text(version + "\n")
    port = free_port()
    log = cwd / "out.log"
    full_env = {**os.environ, "PORT": str(port), **env}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(APPS / "api" / "app.py")], cwd=cwd, env=full_env, stdout=out, stderr=out
        )
    app = App(proc, port, cwd, log)
    app.startup_s = await wait_http(app.base + "/health", proc)
    return app


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[App]:
    app = await start_api(tmp_path, SHIPYARD_REVISION="abc123", SHIPYARD_INSTANCE="api-7")
    yield app
    _stop(app.proc)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        yield s


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


async def test_api_endpoints(api: App, session: aiohttp.ClientSession) -> None:
    assert await get(session, api.base + "/health") == (200, "ok")
    async with session.get(api.base + "/version") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body == {"version": "1.2.3", "revision": "abc123", "instance": "api-7", "pid": api.proc.pid}
    async with session.get(api.base + "/") as resp:
        assert resp.status == 200
        assert (await resp.json())["version"] == "1.2.3"
    async with session.get(api.base + "/slow?ms=50") as resp:
        assert resp.status == 200
        assert (await resp.json())["slept_ms"] == 50
    assert (await get(session, api.base + "/slow?ms=abc"))[0] == 400
    log = api.log.read_text()
    assert log.count("api starting") == 1
    assert "version=1.2.3" in log and "revision=abc123" in log and f"127.0.0.1:{api.port}" in log


async def test_api_starts_fast(api: App) -> None:
    # The target is < 1 s (about 0.3 s idle); the bound is loose so a busy CI box does not flake.
    assert api.startup_s < 5.0


async def test_api_keepalive(api: App, session: aiohttp.ClientSession) -> None:
    async with session.get(api.base + "/") as resp:
        await resp.read()
        assert resp.headers.get("Connection", "").lower() != "close"
        assert resp.version == aiohttp.HttpVersion11


async def test_api_websocket_echo(api: App, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(api.base.replace("http", "ws") + "/ws") as ws:
        await ws.send_str("hello")
        assert await ws.receive_str(timeout=5) == "hello"
        await ws.send_bytes(b"\x00\x01")
        assert await ws.receive_bytes(timeout=5) == b"\x00\x01"
        async with session.get(api.base + "/admin/stats") as resp:
            assert (await resp.json())["websockets"] == 1


async def test_api_error_rate_switch(api: App, session: aiohttp.ClientSession) -> None:
    async def statuses(path: str, n: int) -> list[int]:
        return [(await get(session, api.base + path))[0] for _ in range(n)]

    async with session.post(api.base + "/admin/error-rate", data="1") as resp:
        assert resp.status == 200
        assert await resp.json() == {"error_rate": 1.0}
    assert await statuses("/", 3) == [500] * 3
    assert await statuses("/version", 3) == [500] * 3
    assert await statuses("/health", 3) == [200] * 3  # health is not part of the fail switch

    async with session.post(api.base + "/admin/error-rate", data="0.5") as resp:
        assert resp.status == 200
    assert sorted(await statuses("/", 10)) == [200] * 5 + [500] * 5  # deterministic share

    for bad in ("2", "-0.1", "abc"):
        async with session.post(api.base + "/admin/error-rate", data=bad) as resp:
            assert resp.status == 400
    async with session.post(api.base + "/admin/error-rate", data="0") as resp:
        assert resp.status == 200
    assert await statuses("/", 3) == [200] * 3


async def test_api_fail_health_file(api: App, session: aiohttp.ClientSession) -> None:
    (api.cwd / "FAIL_HEALTH").write_text("")
    assert (await get(session, api.base + "/health"))[0] == 500
    assert (await get(session, api.base + "/version"))[0] == 200  # only health fails
    (api.cwd / "FAIL_HEALTH").unlink()
    assert await get(session, api.base + "/health") == (200, "ok")


async def test_api_env_switches(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    app = await start_api(tmp_path, HEALTH_FAIL="1", ERROR_RATE="1")
    try:
        assert (await get(session, app.base + "/health"))[0] == 500
        assert (await get(session, app.base + "/"))[0] == 500
        assert (await get(session, app.base + "/admin/error-rate"))[1] == '{"error_rate": 1.0}'
    finally:
        _stop(app.proc)


def test_api_bad_env_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "PORT": str(free_port()), "ERROR_RATE": "7"}
    proc = subprocess.run(
        [sys.executable, str(APPS / "api" / "app.py")], cwd=tmp_path, env=env, capture_output=True, timeout=30
    )
    assert proc.returncode == 2
    assert b"error rate" in proc.stderr


async def test_api_sigterm_finishes_inflight(api: App, session: aiohttp.ClientSession) -> None:
    slow = asyncio.create_task(get(session, api.base + "/slow?ms=1500"))
    # Wait until the server is really serving it, so SIGTERM provably lands mid-request.
    t0 = time.monotonic()
    while True:
        async with session.get(api.base + "/admin/stats") as resp:
            if (await resp.json())["slow_in_flight"] == 1:
                break
        assert time.monotonic() - t0 < 10, "slow request never reached the server"
        await asyncio.sleep(0.02)
    api.proc.send_signal(signal.SIGTERM)
    status, body = await asyncio.wait_for(slow, 10)
    assert status == 200 and '"slept_ms": 1500' in body
    code = await asyncio.to_thread(api.proc.wait, 10)
    assert code == 0


async def test_api_sigterm_closes_websockets(api: App, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(api.base.replace("http", "ws") + "/ws") as ws:
        await ws.send_str("ping")
        assert await ws.receive_str(timeout=5) == "ping"
        t0 = time.monotonic()
        api.proc.send_signal(signal.SIGTERM)
        msg = await ws.receive(timeout=10)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY
    code = await asyncio.to_thread(api.proc.wait, 10)
    assert code == 0
    assert time.monotonic() - t0 < 10  # not held until SHUTDOWN_TIMEOUT (30 s)


@pytest.fixture
def static_site(tmp_path: Path) -> Iterator[App]:
    site = tmp_path / "web"
    shutil.copytree(APPS / "static", site)
    (site / "VERSION").write_text("2.3.4\n")
    build = subprocess.run([sys.executable, "build.py"], cwd=site, capture_output=True, text=True, timeout=60)
    assert build.returncode == 0, build.stderr
    port = free_port()
    log = site / "out.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", "dist"],
            cwd=site,
            stdout=out,
            stderr=out,
        )
    yield App(proc, port, site, log)
    _stop(proc)


async def test_static_build_and_serve(static_site: App, session: aiohttp.ClientSession) -> None:
    assert "{{VERSION}}" in (static_site.cwd / "index.html").read_text()  # source keeps the placeholder
    await wait_http(static_site.base + "/", static_site.proc)
    status, html = await get(session, static_site.base + "/")
    assert status == 200
    assert "2.3.4" in html and "{{VERSION}}" not in html
    assert await get(session, static_site.base + "/version.txt") == (200, "2.3.4\n")
