"""Router workers: one router generation served by several processes from the same listening sockets.

Real keeper, real router lead and worker processes, real backends (router_helpers), real connections;
what is checked is what a user relies on: every change applies in every process before it is answered,
a killed worker is replaced without a refused connection, drains wait for requests held by any
process, numbers are summed, and workers retire with their generation.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shipyard.proxy import KeeperError, RouterClient, keeper_request, keeper_status

try:
    from .router_helpers import LiveBackend, start_backend
    from .test_agent_router import Prober
    from .test_agent_support import DEADLINE, Harness, await_until, harness_fixture, wait_until
except ImportError:
    from router_helpers import LiveBackend, start_backend
    from test_agent_router import Prober
    from test_agent_support import DEADLINE, Harness, await_until, harness_fixture, wait_until

__all__ = ["harness_fixture"]

WORKERS = 3


@pytest.fixture(name="host")
def host_fixture(harness: Harness) -> Iterator[Harness]:
    """A keeper with no agent, whose router generations run WORKERS processes each."""
    harness.state_dir.mkdir(parents=True)
    log = (harness.base / "keeper.out").open("ab")
    subprocess.Popen([sys.executable, "-m", "shipyard.proxy.keeperd", "--state-dir", str(harness.state_dir),
                      "--agent-module", "", "--router-workers", str(WORKERS)],
                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    harness.active_router()
    yield harness


@pytest.fixture(name="backends")
async def backends_fixture() -> AsyncIterator[list[LiveBackend]]:
    started = [await start_backend("a"), await start_backend("b")]
    yield started
    for b in started:
        await b.stop()


@dataclass
class Served:
    """A route api/dev to backend a, with every process of the generation up."""

    client: RouterClient
    listen: str
    a: LiveBackend
    b: LiveBackend
    processes: list[dict[str, Any]]


@pytest.fixture(name="served")
async def served_fixture(host: Harness, backends: list[LiveBackend]) -> AsyncIterator[Served]:
    a, b = backends
    async with RouterClient(host.state_dir, timeout=DEADLINE) as client:
        listen = await _route(client, a)
        yield Served(client, listen, a, b, await _all_workers_up(client))


def _backend(b: LiveBackend, weight: int = 1) -> dict[str, Any]:
    return {"address": b.address, "weight": weight, "revision": f"rev-{b.name}", "instance": b.name}


async def _get(listen: str, path: str = "/") -> tuple[int, str]:
    """One request on a fresh connection (so the kernel picks a process for each)."""
    host, port = listen.rsplit(":", 1)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), DEADLINE)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), DEADLINE)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def _processes(client: RouterClient) -> list[dict[str, Any]]:
    return list((await client.router_stats("api", "dev"))["processes"])


async def _all_workers_up(client: RouterClient) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        procs = await _processes(client)
        return procs if len(procs) == WORKERS else None
    return await await_until(check, f"{WORKERS} processes serving")


async def _route(client: RouterClient, backend: LiveBackend) -> str:
    listen = (await client.ensure_router("api", "dev", "127.0.0.1:0"))["listen"]
    await client.set_backends("api", "dev", [_backend(backend)])
    return str(listen)


async def _until_every_process_served(client: RouterClient, listen: str, expect: str) -> int:
    """Fresh connections until each process has answered one; every answer must come from `expect`."""
    sent = 0
    while True:
        for _ in range(10):
            status, body = await _get(listen)
            sent += 1
            assert (status, body) == (200, expect)
        procs = await _processes(client)
        if all(p["requests"] for p in procs):
            return sent
        assert sent < 2000, f"after {sent} connections some process never served: {procs}"


async def test_every_process_serves_and_applies_each_change_before_the_answer(served: Served) -> None:
    client, listen, a, b = served.client, served.listen, served.a, served.b
    sent = await _until_every_process_served(client, listen, "a")
    stats = await client.router_stats("api", "dev")
    assert stats["per_backend"][a.address]["requests"] == sent      # summed over the processes
    assert sum(p["requests"] for p in stats["processes"]) == sent
    assert len({p["pid"] for p in stats["processes"]}) == WORKERS
    metrics = await client.metrics()
    assert f'shipyard_router_requests_total{{service_env="api/dev",backend="{a.address}",' \
           f'revision="rev-a"}} {sent}' in metrics

    # Right after the answer, no process may still route to a: each applied the change first.
    await client.set_backends("api", "dev", [_backend(b)])
    answers = await asyncio.gather(*(_get(listen) for _ in range(60)))
    assert set(answers) == {(200, "b")}
    # Options too (a different retry count is visible in every process's table, read back by status).
    await client.ensure_router("api", "dev", listen, {"retries": 0})
    assert (await client.list_routers())[0]["options"]["retries"] == 0


async def test_a_killed_worker_is_replaced_without_refusals_and_serves_the_current_table(served: Served) -> None:
    client, listen, b = served.client, served.listen, served.b
    procs = served.processes
    lead, victim = procs[0]["pid"], procs[1]["pid"]
    prober = Prober(listen, "/").start()
    await await_until(prober.answered(5), "probes answered before the kill")
    pidfd = os.pidfd_open(victim)
    os.kill(victim, signal.SIGKILL)
    await asyncio.to_thread(select.select, [pidfd], [], [], DEADLINE)     # readable once it is gone
    os.close(pidfd)
    died = time.monotonic()

    async def replaced() -> list[int] | None:
        pids = [p["pid"] for p in await _processes(client)]
        return pids if len(pids) == WORKERS and victim not in pids else None
    pids = await await_until(replaced, "the killed worker replaced")
    await prober.stop()
    assert pids[0] == lead
    assert not prober.refused, f"{len(prober.refused)} connections refused while a worker was replaced"
    assert prober.ok > 0
    # Requests the killed process held may fail; nothing started after it died may.
    assert [f for f in prober.failed if f[0] >= died] == [], prober.failed
    # The replacement got the table: a change now reaches it like the others.
    await client.set_backends("api", "dev", [_backend(b)])
    assert await _until_every_process_served(client, listen, "b") > 0


async def test_a_drain_waits_for_requests_held_by_any_process(served: Served) -> None:
    client, listen, a, b = served.client, served.listen, served.a, served.b
    # Slow requests on fresh connections until a worker (not the lead) holds one.
    slow: list[asyncio.Task[tuple[int, str]]] = []
    while True:
        key = f"k{len(slow)}"
        slow.append(asyncio.create_task(_get(listen, f"/wait/{key}")))
        await asyncio.wait_for(a.began(key).wait(), DEADLINE)
        procs = await _processes(client)
        if any(p["in_flight"] for p in procs[1:]):
            break
        assert len(slow) < 50, f"no worker ever held a request: {procs}"
    # Every request before the last was taken by the lead; the last one is held by a worker.
    await client.set_backends("api", "dev", [_backend(b)])
    drain = asyncio.create_task(client.drain("api", "dev", a.address, timeout=DEADLINE))
    for i, task in enumerate(slow[:-1]):
        a.gate(f"k{i}").set()
        assert (await task)[0] == 200
    await await_until(_lead_idle(client), "the lead's requests done")
    done, _ = await asyncio.wait({drain}, timeout=1.0)      # it would end at once if it ignored workers
    assert not done, f"the drain ended while a worker still held a request: {drain.result()}"
    a.gate(f"k{len(slow) - 1}").set()
    assert (await slow[-1])[0] == 200
    report = await asyncio.wait_for(drain, DEADLINE)
    assert report["remaining"] == 0


async def test_workers_retire_with_their_generation_and_the_next_one_brings_its_own(
        host: Harness, served: Served) -> None:
    client, listen = served.client, served.listen
    old = [p["pid"] for p in served.processes]
    await asyncio.to_thread(keeper_request, host.state_dir, "restart", timeout=DEADLINE, routers=True,
                            agent=False)
    new = [p["pid"] for p in await _all_workers_up(client)]
    assert not set(old) & set(new)
    await asyncio.to_thread(wait_until, lambda: not any(_alive(p) for p in old), "old workers to exit")
    assert await _until_every_process_served(client, listen, "a") > 0

    # A lead that dies takes its workers with it: they stop accepting, finish and exit.
    lead = new[0]
    os.kill(lead, signal.SIGKILL)
    await asyncio.to_thread(wait_until, lambda: not any(_alive(p) for p in new), "orphaned workers to exit")
    after = [p["pid"] for p in await _all_workers_up(client)]
    assert not set(after) & set(new)
    assert keeper_status(host.state_dir)["router_workers"] == WORKERS  # type: ignore[index]


def _lead_idle(client: RouterClient) -> Any:
    async def check() -> bool:
        return (await _processes(client))[0]["in_flight"] == 0
    return check


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def test_a_bad_worker_count_is_refused_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "shipyard.proxy.keeperd", "--state-dir", str(tmp_path),
                          "--router-workers", "0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "router workers must be 'auto' or a number from 1 to 64, not '0'" in out.stderr


async def test_a_restart_changes_the_worker_count_without_a_refused_connection(
        host: Harness, served: Served) -> None:
    client, listen = served.client, served.listen
    prober = Prober(listen, "/").start()
    await await_until(prober.answered(5), "probes answered")
    await asyncio.to_thread(keeper_request, host.state_dir, "restart", timeout=DEADLINE, routers=True,
                            agent=False, keeper=True, router_workers="2")

    async def two() -> bool:
        st = keeper_status(host.state_dir)
        return bool(st and st["router_workers"] == 2 and len(await _processes(client)) == 2)
    await await_until(two, "a re-executed keeper whose generation runs 2 processes")
    await prober.stop()
    assert not prober.refused and not prober.failed, (prober.refused, prober.failed)
    with pytest.raises(KeeperError, match="router workers must be 'auto' or a number from 1 to 64"):
        await asyncio.to_thread(keeper_request, host.state_dir, "restart", routers=True, agent=False,
                                router_workers="many")
