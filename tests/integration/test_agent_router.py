"""Built-in routers through the agent's API, with real traffic to real instances."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import httpx
import pytest

from shipyard.agent import procs
from shipyard.agent.errors import ConflictError, NotFoundError
from shipyard.proxy import RouterOptions

try:
    from .test_agent_support import DEADLINE, Harness, await_until, harness_fixture, wait_until
except ImportError:
    from test_agent_support import DEADLINE, Harness, await_until, harness_fixture, wait_until

__all__ = ["harness_fixture"]


def _backend(rec: dict[str, Any], weight: int) -> dict[str, Any]:
    return {"address": rec["address"], "weight": weight, "revision": rec["revision"], "instance": rec["id"]}


async def _revisions(listen: str, n: int) -> collections.Counter[str]:
    seen: collections.Counter[str] = collections.Counter()
    async with httpx.AsyncClient(base_url=f"http://{listen}", timeout=10) as http:
        for i in range(n):
            resp = await http.get(f"/r/{i}")
            assert resp.status_code == 200, resp.text
            seen[resp.json()["revision"]] += 1
    return seen


async def test_router_routes_drains_and_reports(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        a = await harness.start_app(client, revision="a" * 40)
        b = await harness.start_app(client, revision="b" * 40)
        router = await client.ensure_router("api", "dev", "127.0.0.1:0")
        listen = router["listen"]
        assert router == {"service": "api", "env": "dev", "listen": listen, "backends": [],
                          "options": RouterOptions().as_dict()}
        assert await client.ensure_router("api", "dev", "127.0.0.1:0") == router       # idempotent
        assert await client.ensure_router("api", "dev", listen) == router

        with_both = await client.set_backends("api", "dev", [_backend(a, 1), _backend(b, 1)])
        assert [x["address"] for x in with_both["backends"]] == [a["address"], b["address"]]
        seen = await _revisions(listen, 40)
        assert seen["a" * 40] > 0 and seen["b" * 40] > 0 and sum(seen.values()) == 40

        await client.set_backends("api", "dev", [_backend(a, 1), _backend(b, 0)])
        assert (await client.drain("api", "dev", b["address"], timeout=5)) == {
            "remaining": 0, "http_left": 0, "ws_closed": 0, "ws_cut": 0}
        assert await _revisions(listen, 10) == {"a" * 40: 10}

        stats = await client.router_stats("api", "dev")
        assert stats["listen"] == listen
        per_revision = stats["per_revision"]
        assert set(per_revision) == {"a" * 40, "b" * 40}

        metrics = await client.metrics()
        assert 'shipyard_router_requests_total{service_env="api/dev"' in metrics
        assert 'shipyard_agent_instances{service="api",env="dev",state="running"} 2' in metrics
        status = await client.status()
        assert status["routers"] == [{"service": "api", "env": "dev", "listen": listen,
                                      "backends": [_backend(a, 1), _backend(b, 0)],
                                      "options": RouterOptions().as_dict()}]

        with pytest.raises(ConflictError, match="weight to 0"):
            await client.drain("api", "dev", a["address"], timeout=1)

        assert await client.delete_router("api", "dev") == {"service": "api", "env": "dev", "deleted": True}
        with pytest.raises(httpx.ConnectError):
            await _revisions(listen, 1)
        with pytest.raises(NotFoundError, match="no router for api/dev"):
            await client.router_stats("api", "dev")


async def test_router_port_in_use_is_a_409(harness: Harness) -> None:
    harness.ensure()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with harness.client() as client:
            with pytest.raises(ConflictError) as err:
                await client.ensure_router("api", "dev", f"127.0.0.1:{port}")
            assert err.value.status == 409
            assert f"cannot listen on 127.0.0.1:{port} for api/dev: the address is already in use" \
                in str(err.value)
            assert (await client.status())["routers"] == []


async def test_routers_come_back_after_agent_restart(harness: Harness) -> None:
    first = harness.ensure()
    async with harness.client() as client:
        app = await harness.start_app(client)
        listen = (await client.ensure_router("api", "dev", "127.0.0.1:0"))["listen"]
        await client.set_backends("api", "dev", [_backend(app, 1)])
        assert await _revisions(listen, 2) == {app["revision"]: 2}
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: harness.agent_pid() is None, "the agent to die")

    harness.ensure()
    async with harness.client() as client:
        status = await client.status()
        assert status["routers"] == [{"service": "api", "env": "dev", "listen": listen,
                                      "backends": [_backend(app, 1)], "options": RouterOptions().as_dict()}]
        assert (await client.get_instance(app["id"]))["pid"] == app["pid"]
        assert await _revisions(listen, 3) == {app["revision"]: 3}


async def test_metrics_listen_serves_only_metrics(harness: Harness) -> None:
    port = procs.free_port()
    harness.paths.ensure_dirs()
    with open(harness.paths.log, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "shipyard.agent", "--state-dir", str(harness.state_dir),
                                 "--metrics-listen", f"127.0.0.1:{port}"], stdout=log, stderr=log,
                                start_new_session=True)
    try:
        async def scrape() -> httpx.Response | None:
            try:
                async with httpx.AsyncClient(timeout=5) as http:
                    return await http.get(f"http://127.0.0.1:{port}/metrics")
            except httpx.TransportError:
                return None

        resp = await await_until(scrape, "the metrics port", DEADLINE)
        assert resp.status_code == 200 and "shipyard_agent_up 1" in resp.text
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/v1/status")).status_code == 404
            assert (await http.post(f"http://127.0.0.1:{port}/v1/shutdown", json={})).status_code in (404, 405)
    finally:
        proc.terminate()
        proc.wait(DEADLINE)


async def test_router_options_are_applied_persisted_and_validated(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        router = await client.ensure_router("api", "dev", "127.0.0.1:0", {"response_timeout": 7, "max_attempts": 2})
        assert router["options"]["response_timeout"] == 7.0 and router["options"]["retries"] == 1  # legacy key
        again = await client.ensure_router("api", "dev", router["listen"], {"connect_timeout": 1.5})
        assert again["options"] == {**RouterOptions().as_dict(), "connect_timeout": 1.5}
        with pytest.raises(Exception, match="unknown router option 'bogus'"):
            await client.ensure_router("api", "dev", router["listen"], {"bogus": 1})
        status = await client.status()
    assert [r["options"]["connect_timeout"] for r in status["routers"]] == [1.5]
