"""Daemons splitting background work through leases in the store, on SQLite and PostgreSQL: one runs a
piece of work, the other waits; a clean stop hands it over at once; a holder that stops renewing (killed,
cut off) loses it once the lease expires; and the work never runs in two daemons at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shipyard.daemon import Daemon, Work
from shipyard.store import Store
from shipyard.testing.wait import wait_until_async

TTL = 1.0


def recording(log: list[tuple[str, str]], who: str) -> Callable[[asyncio.Event], object]:
    async def run(stop: asyncio.Event) -> None:
        log.append((who, "start"))
        try:
            await stop.wait()
        finally:
            log.append((who, "stop"))
    return run


def overlaps(log: list[tuple[str, str]]) -> bool:
    running: set[str] = set()
    for who, what in log:
        if what == "start":
            if running:
                return True
            running.add(who)
        else:
            running.discard(who)
    return False


async def test_one_daemon_runs_the_work_and_the_other_takes_over(store: Store) -> None:
    log: list[tuple[str, str]] = []
    a = Daemon(store, [Work("outbox", recording(log, "a"))], ttl=TTL, owner="daemon-a", say=lambda _: None)
    b = Daemon(store, [Work("outbox", recording(log, "b"))], ttl=TTL, owner="daemon-b", say=lambda _: None)
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    await wait_until_async(lambda: a.status()["running"] == ["outbox"], 10, "a to run the outbox")
    task_b = asyncio.create_task(b.run(stop_b))
    await asyncio.sleep(0)          # b ticks at once (its first claim), then every ttl/3
    await wait_until_async(lambda: "outbox" in b._told, 10, "b to find it taken")
    assert b.status()["running"] == []

    # A clean stop releases the lease: b takes over within one of its ticks.
    stop_a.set()
    await task_a
    await wait_until_async(lambda: b.status()["running"] == ["outbox"], 5, "b to take over after a stopped")

    # b stops renewing (as if SIGKILLed: no release): a new daemon gets the work once the lease expires.
    b_loop = task_b
    b_loop.cancel()                 # its loop dies without shutdown(): the lease stays until it expires
    for running in b.running.values():
        running.task.cancel()
    c = Daemon(store, [Work("outbox", recording(log, "c"))], ttl=TTL, owner="daemon-c", say=lambda _: None)
    stop_c = asyncio.Event()
    started = asyncio.get_running_loop().time()
    task_c = asyncio.create_task(c.run(stop_c))
    await wait_until_async(lambda: c.status()["running"] == ["outbox"], 10, "c to take over an expired lease")
    assert asyncio.get_running_loop().time() - started <= TTL + 2.0
    stop_c.set()
    await task_c
    assert not overlaps(log), log
    assert [w for w, what in log if what == "start"] == ["a", "b", "c"]
