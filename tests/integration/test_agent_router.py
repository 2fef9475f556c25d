"""Built-in routers in their own processes, with real traffic to real instances: the admin API, and
what happens to traffic when the agent or a router process dies or is replaced."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from shipyard.agent import procs
from shipyard.agent.daemon import restart_agent
from shipyard.demo.load import LoadRunner
from shipyard.ipc import free_port
from shipyard.proxy import RouterConflict, RouterNotFound, RouterOptions

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


async def _serve(harness: Harness, n: int = 1) -> tuple[list[dict[str, Any]], str]:
    """`n` instances behind a router of api/dev; their records and the router's address."""
    async with harness.client() as client:
        recs = [await harness.start_app(client) for _ in range(n)]
        listen = (await client.router.ensure_router("api", "dev", "127.0.0.1:0"))["listen"]
        await client.router.set_backends("api", "dev", [_backend(r, 1) for r in recs])
    return recs, listen


class Prober:
    """Opens a fresh connection every few ms and sends one request: records refusals with their time."""

    def __init__(self, listen: str, path: str = "/probe") -> None:
        host, port = listen.rsplit(":", 1)
        self.request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
        self.addr = (host, int(port))
        self.refused: list[float] = []
        self.ok = 0
        self.failed: list[tuple[float, str]] = []      # (when the request started, what happened)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _one(self) -> None:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(*self.addr), 10)
        except ConnectionRefusedError:
            self.refused.append(time.monotonic())
            return
        try:
            writer.write(self.request)
            data = await asyncio.wait_for(reader.read(), 10)
            if data.startswith(b"HTTP/1.1 200"):
                self.ok += 1
            else:
                self.failed.append((started, data[:40].decode(errors="replace")))
        except (OSError, TimeoutError) as exc:
            self.failed.append((started, repr(exc)))
        finally:
            writer.close()

    async def _run(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        while not self._stop.is_set():
            task = asyncio.create_task(self._one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(0.02)
        if pending:
            await asyncio.wait(pending)

    def answered(self, n: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return self.ok >= n
        return check

    def start(self) -> Prober:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


async def test_router_routes_drains_and_reports(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        routers = client.router
        a = await harness.start_app(client, revision="a" * 40)
        b = await harness.start_app(client, revision="b" * 40)
        router = await routers.ensure_router("api", "dev", "127.0.0.1:0")
        listen = router["listen"]
        assert router == {"service": "api", "env": "dev", "listen": listen, "backends": [],
                          "options": RouterOptions().as_dict()}
        assert await routers.ensure_router("api", "dev", "127.0.0.1:0") == router       # idempotent
        assert await routers.ensure_router("api", "dev", listen) == router

        with_both = await routers.set_backends("api", "dev", [_backend(a, 1), _backend(b, 1)])
        assert [x["address"] for x in with_both["backends"]] == [a["address"], b["address"]]
        seen = await _revisions(listen, 40)
        assert seen["a" * 40] > 0 and seen["b" * 40] > 0 and sum(seen.values()) == 40

        await routers.set_backends("api", "dev", [_backend(a, 1), _backend(b, 0)])
        assert (await routers.drain("api", "dev", b["address"], timeout=5)) == {
            "remaining": 0, "http_left": 0, "ws_closed": 0, "ws_cut": 0}
        assert await _revisions(listen, 10) == {"a" * 40: 10}

        stats = await routers.router_stats("api", "dev")
        assert stats["listen"] == listen
        assert set(stats["per_revision"]) == {"a" * 40, "b" * 40}

        # One scrape of the agent covers the host: its own gauges and the router processes' series.
        metrics = await client.metrics()
        assert 'shipyard_router_requests_total{service_env="api/dev"' in metrics
        assert 'shipyard_agent_instances{service="api",env="dev",state="running"} 2' in metrics
        status = await client.status()
        assert status["routers"] == [{"service": "api", "env": "dev", "listen": listen,
                                      "backends": [_backend(a, 1), _backend(b, 0)],
                                      "options": RouterOptions().as_dict()}]
        table = json.loads((harness.state_dir / "routes.json").read_text())["routers"]
        assert [r["backends"] for r in table] == [[_backend(a, 1), _backend(b, 0)]]

        with pytest.raises(RouterConflict, match="weight to 0"):
            await routers.drain("api", "dev", a["address"], timeout=1)
        with pytest.raises(Exception, match="listed twice"):
            await routers.set_backends("api", "dev", [_backend(a, 1), _backend(a, 2)])
        with pytest.raises(Exception, match="host:port"):
            await routers.set_backends("api", "dev", [{"address": "nowhere", "weight": 1}])

        assert await routers.delete_router("api", "dev") == {"service": "api", "env": "dev", "deleted": True}
        with pytest.raises(httpx.ConnectError):
            await _revisions(listen, 1)
        with pytest.raises(RouterNotFound, match="no router for api/dev"):
            await routers.router_stats("api", "dev")
    assert json.loads((harness.state_dir / "routes.json").read_text())["routers"] == []
    assert harness.keeper()["listeners"] == []          # the keeper let the port go too


async def test_router_port_in_use_is_a_409(harness: Harness) -> None:
    harness.ensure()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with harness.client() as client:
            with pytest.raises(RouterConflict) as err:
                await client.router.ensure_router("api", "dev", f"127.0.0.1:{port}")
            assert err.value.status == 409
            assert f"cannot listen on 127.0.0.1:{port} for api/dev: the address is already in use" \
                in str(err.value)
            assert (await client.status())["routers"] == []


async def test_traffic_survives_agent_sigkill(harness: Harness) -> None:
    """The routers do not live in the agent: killing it fails no request, and it comes back by itself."""
    first = harness.ensure()
    recs, listen = await _serve(harness, 2)
    with LoadRunner(f"http://{listen}/load", 50, client_retries=False) as load:
        await await_until(lambda: _answered(load, 20), "traffic through the router")
        os.kill(first, signal.SIGKILL)
        second = harness.new_agent(first)
        seen = load.snapshot().total
        await await_until(lambda: _answered(load, seen + 20), "traffic after the agent came back")
        result = load.stop()
    assert result.failed == 0, result.summary()
    async with harness.client() as client:
        assert (await client.status())["pid"] == second
        for rec in recs:
            again = await client.get_instance(rec["id"])
            assert (again["pid"], again["state"]) == (rec["pid"], "running")


async def _answered(load: LoadRunner, n: int) -> bool:
    return load.snapshot().succeeded >= n


async def test_killed_router_is_replaced_within_a_second_and_only_in_flight_requests_fail(
        harness: Harness) -> None:
    harness.ensure()
    recs, listen = await _serve(harness, 1)
    async with harness.client() as client:
        await client.router.ensure_router("api", "dev", listen, {"connect_timeout": 2.5})
    victim = harness.active_router()
    harness.standby_ready()                  # the steady state: a warm standby waits to take over
    async with httpx.AsyncClient(timeout=20) as http:
        slow = [asyncio.create_task(http.get(f"http://{listen}/sleep/5", headers={"Connection": "close"}))
                for _ in range(3)]
        await await_until(lambda: _in_flight(harness, 3), "three slow requests in flight")
        async with harness.client() as client:
            processes = (await client.router.router_stats("api", "dev"))["processes"]
        assert processes[0]["pid"] == victim        # the lead; the others are its workers, which survive it
        held = processes[0]["in_flight"]
        prober = Prober(listen).start()       # started now, so none of its requests is counted in `held`
        await await_until(prober.answered(3), "the prober's first answers")
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        replaced = await await_until(lambda: _new_active(harness, victim), "a new active router", timeout=5)
        took = time.monotonic() - killed_at
        # A fresh request right after the kill waits for the new generation, it is not refused.
        fresh = await http.get(f"http://{listen}/after-kill")
        outcomes = await asyncio.gather(*slow, return_exceptions=True)
    await asyncio.sleep(0.5)
    await prober.stop()
    assert took < 1.0, f"router replaced after {took:.2f}s"
    assert replaced != victim and procs.is_running(replaced)
    assert fresh.status_code == 200 and fresh.json()["instance"] == recs[0]["id"]
    # Exactly those in flight in the killed process fail; a worker of its generation finishes its own.
    assert sum(isinstance(o, httpx.TransportError) for o in outcomes) == held, (held, outcomes)
    assert all(isinstance(o, httpx.TransportError) or o.status_code == 200 for o in outcomes), outcomes
    # Never refused; and what failed had been sent before the kill (in flight in the dead process).
    assert prober.refused == [] and all(t <= killed_at for t, _ in prober.failed), (prober.refused, prober.failed)
    assert prober.ok > 10
    async with harness.client() as client:
        restored = (await client.router.list_routers())[0]       # the table as committed
    assert restored["listen"] == listen and restored["backends"] == [_backend(recs[0], 1)]
    assert restored["options"]["connect_timeout"] == 2.5


async def _in_flight(harness: Harness, n: int) -> bool:
    async with harness.client() as client:
        stats = await client.router.router_stats("api", "dev")
    return sum(b["in_flight"] for b in stats["backends"]) >= n


async def _new_active(harness: Harness, old: int) -> int | None:
    st = harness.keeper()
    return next((r["pid"] for r in st["routers"] if r["state"] == "active" and r["pid"] != old), None)


async def test_router_handover_fails_no_request(harness: Harness) -> None:
    """`agent restart`: the new generation accepts on the same sockets before the old one stops; the old
    one finishes what it had in flight (slow requests included)."""
    harness.ensure()
    _, listen = await _serve(harness, 2)
    old = harness.active_router()
    with LoadRunner(f"http://{listen}/load", 50, client_retries=False) as load:
        await await_until(lambda: _answered(load, 20), "traffic through the router")
        async with httpx.AsyncClient(timeout=30) as http:
            slow = [asyncio.create_task(http.get(f"http://{listen}/sleep/2")) for _ in range(2)]
            await await_until(lambda: _in_flight(harness, 2), "two slow requests in flight")
            answer = await asyncio.to_thread(restart_agent, harness.state_dir, DEADLINE * 2)
            outcomes = await asyncio.gather(*slow, return_exceptions=True)
        seen = load.snapshot().total
        await await_until(lambda: _answered(load, seen + 20), "traffic after the handover")
        result = load.stop()
    assert answer["routers"]["old"] == old
    assert [getattr(o, "status_code", o) for o in outcomes] == [200, 200]
    assert result.failed == 0, result.summary()
    wait_until(lambda: not procs.is_running(old), "the old generation to exit")


async def test_metrics_listen_serves_only_metrics(harness: Harness) -> None:
    port = free_port()
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
        routers = client.router
        router = await routers.ensure_router("api", "dev", "127.0.0.1:0", {"response_timeout": 7, "max_attempts": 2})
        assert router["options"]["response_timeout"] == 7.0 and router["options"]["retries"] == 1  # legacy key
        again = await routers.ensure_router("api", "dev", router["listen"], {"connect_timeout": 1.5})
        assert again["options"] == {**RouterOptions().as_dict(), "connect_timeout": 1.5}
        with pytest.raises(Exception, match="unknown router option 'bogus'"):
            await routers.ensure_router("api", "dev", router["listen"], {"bogus": 1})
        status = await client.status()
    assert [r["options"]["connect_timeout"] for r in status["routers"]] == [1.5]


async def test_a_new_keeper_adopts_the_routers_and_agent_of_a_dead_one(harness: Harness) -> None:
    """SIGKILL the keeper: routers, agent and apps serve on; the next keeper (any shipyard command starts
    one) is handed the running router's sockets, so later router crashes are covered again."""
    agent = harness.ensure()
    recs, listen = await _serve(harness, 1)
    router = harness.active_router()
    keeper = harness.keeper()["pid"]
    os.kill(keeper, signal.SIGKILL)
    wait_until(lambda: not procs.is_running(keeper), "the keeper to die")
    assert (await _revisions(listen, 3)) == {recs[0]["revision"]: 3}       # no keeper needed to serve
    await await_until(lambda: _exists(harness.state_dir / "router-handoff.sock"), "the router to wait for a keeper")

    harness.ensure()
    st = harness.keeper()
    assert st["pid"] != keeper and st["agent"]["pid"] == agent
    assert harness.active_router() == router and st["listeners"] == [listen]
    harness.standby_ready()
    os.kill(router, signal.SIGKILL)                          # the adopted sockets still outlive it
    replaced = await await_until(lambda: _new_active(harness, router), "a new active router", timeout=5)
    assert replaced != router
    assert (await _revisions(listen, 3)) == {recs[0]["revision"]: 3}


async def _exists(path: Any) -> bool:
    return bool(path.exists())
