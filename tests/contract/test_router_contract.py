"""The Router contract (shipyard.routers.base.Router), run against every registered router kind with real
HTTP traffic: ensure, set_backends/backends, verify, weights, drain, stats, and how it fails (unreachable,
a refused change, a peer that never answers): always one of the kind's documented ShipyardErrors, within
a bound, never a hang or a library's raw exception."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from shipyard.errors import ShipyardError
from shipyard.routers.base import WeightedBackend, counts_in_flight

from .harnesses import Backend, RouterCase

pytestmark = pytest.mark.timeout(60)


def wb(case: RouterCase, backend: Backend, weight: int) -> WeightedBackend:
    return WeightedBackend(case.at(backend), weight, f"rev-{backend.name}", backend.name)


def as_set(backends: list[WeightedBackend]) -> set[tuple[str, int]]:
    return {(b.address, b.weight) for b in backends}


async def front_of(case: RouterCase) -> str:
    front = await case.router.ensure()
    assert front is not None, "this router cannot tell its front address: the traffic tests need one"
    return front


async def served(front: str, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=f"http://{front}", timeout=10.0) as http:
        for _ in range(n):
            resp = await http.get("/")
            seen[resp.headers.get("X-Backend", f"status {resp.status_code}")] += 1
    return seen


async def test_ensure_returns_a_stable_address_or_none(router_case: RouterCase) -> None:
    first = await router_case.router.ensure()
    assert first is None or (":" in first and first.rsplit(":", 1)[1].isdigit()), first
    assert await router_case.router.ensure() == first          # idempotent, and the address stays


async def test_backends_reads_back_the_set_that_was_set(router_case: RouterCase, backends: list[Backend]) -> None:
    a, b, c = backends
    await router_case.router.ensure()
    await router_case.router.set_backends([wb(router_case, a, 3), wb(router_case, b, 1)])
    assert as_set(await router_case.router.backends()) == {(router_case.at(a), 3), (router_case.at(b), 1)}
    await router_case.router.set_backends([wb(router_case, b, 2), wb(router_case, c, 5)])        # replaced, not merged
    assert as_set(await router_case.router.backends()) == {(router_case.at(b), 2), (router_case.at(c), 5)}
    await router_case.router.set_backends([])
    assert await router_case.router.backends() == []


async def test_verify_tells_the_set_served_from_another(router_case: RouterCase, backends: list[Backend]) -> None:
    a, b, _ = backends
    r = router_case.router
    await r.ensure()
    await r.set_backends([wb(router_case, a, 3), wb(router_case, b, 1)])
    if not router_case.can_verify:
        assert await r.verify([wb(router_case, a, 3), wb(router_case, b, 1)]) is None
        return
    assert await r.verify([wb(router_case, a, 3), wb(router_case, b, 1)]) is True
    assert await r.verify([wb(router_case, a, 1), wb(router_case, b, 1)]) is False
    assert await r.verify([wb(router_case, a, 3)]) is False


async def test_weights_split_real_requests(router_case: RouterCase, backends: list[Backend]) -> None:
    a, b, c = backends
    front = await front_of(router_case)
    await router_case.router.set_backends([wb(router_case, a, 3), wb(router_case, b, 1), wb(router_case, c, 0)])
    if router_case.traffic:                  # no data plane here: what the router serves, read back instead
        assert await router_case.router.verify([wb(router_case, a, 3), wb(router_case, b, 1)]) is True, \
            router_case.traffic
        assert as_set(await router_case.router.backends()) == {(router_case.at(a), 3), (router_case.at(b), 1),
                                                               (router_case.at(c), 0)}
        return
    seen = await served(front, 60)
    # 3:1 of 60 is 45:15; the tolerance is three standard deviations of a per-request random choice
    assert abs(seen["a"] - 45) <= 10 and abs(seen["b"] - 15) <= 10 and seen["c"] == 0, seen
    assert sum(seen.values()) == seen["a"] + seen["b"], seen          # nothing failed


async def test_drain_is_zero_with_nothing_in_flight(router_case: RouterCase, backends: list[Backend]) -> None:
    a, b, _ = backends
    front = await front_of(router_case)
    await router_case.router.set_backends([wb(router_case, a, 1), wb(router_case, b, 1)])
    if not router_case.traffic:
        await served(front, 4)
    await router_case.router.set_backends([wb(router_case, b, 1)])
    started = time.monotonic()
    assert await router_case.router.drain(router_case.at(a), timeout=5.0) == 0
    assert time.monotonic() - started < 4.0                 # returned when empty, not at the deadline


async def test_drain_counts_and_then_waits_for_a_request_in_flight(router_case: RouterCase,
                                                                   backends: list[Backend]) -> None:
    a, b, _ = backends
    front = await front_of(router_case)
    r = router_case.router
    await r.set_backends([wb(router_case, a, 1)])
    if not counts_in_flight(r):
        # The router says it cannot count (ALB): drain waits its own budget (the target group's
        # deregistration delay, 1 s in the world), bounded by the caller's, and answers 0.
        await r.set_backends([wb(router_case, b, 1)])
        started = time.monotonic()
        assert await r.drain(router_case.at(a), timeout=0.2) == 0
        assert time.monotonic() - started < 0.2 + 2.0        # the caller's budget bounds it
        started = time.monotonic()
        assert await r.drain(router_case.at(a), timeout=20.0) == 0
        assert 0.9 <= time.monotonic() - started < 10.0      # the delay, not the 20 s budget
        return
    async with httpx.AsyncClient(timeout=30.0) as http:
        slow = asyncio.create_task(http.get(f"http://{front}/slow/one"))
        await asyncio.wait_for(a.started("one").wait(), 10.0)
        await r.set_backends([wb(router_case, b, 1)])
        started = time.monotonic()
        left = await r.drain(router_case.at(a), timeout=0.5)
        assert left > 0, "a request in flight was not counted"
        assert time.monotonic() - started < 0.5 + 5.0        # the budget bounds it
        waiting = asyncio.create_task(r.drain(router_case.at(a), timeout=20.0))
        await asyncio.sleep(0)
        a.gate("one").set()                                  # the request may finish now
        assert (await slow).status_code == 200               # drained, not cut
        assert await asyncio.wait_for(waiting, 15.0) == 0    # and drain saw it end, long before its budget
    assert (await served(front, 3)) == Counter({"b": 3})


async def test_stats_is_a_plain_dict(router_case: RouterCase, backends: list[Backend]) -> None:
    a, _, _ = backends
    front = await front_of(router_case)
    await router_case.router.set_backends([wb(router_case, a, 1)])
    if not router_case.traffic:
        await served(front, 3)
    stats = await router_case.router.stats()
    assert isinstance(stats, dict)
    json.dumps(stats)                                         # stored and shown as it is


async def test_a_refused_change_is_an_error_and_changes_nothing(router_case: RouterCase,
                                                                backends: list[Backend]) -> None:
    a, b, _ = backends
    r = router_case.router
    await r.ensure()
    await r.set_backends([wb(router_case, a, 1), wb(router_case, b, 1)])
    bad = WeightedBackend("not-an-address", 1, "rev", "bad")
    with pytest.raises(ShipyardError):
        async with asyncio.timeout(router_case.bound):
            await r.set_backends([wb(router_case, a, 1), bad])
    assert as_set(await r.backends()) == {(router_case.at(a), 1), (router_case.at(b), 1)}


async def test_an_unreachable_router_fails_fast_with_its_error(router_case: RouterCase,
                                                               backends: list[Backend]) -> None:
    a, _, _ = backends
    r = router_case.router
    await r.ensure()
    await r.set_backends([wb(router_case, a, 1)])
    await router_case.cut()
    calls: dict[str, Callable[[], Awaitable[object]]] = {"ensure": r.ensure, "backends": r.backends, "stats": r.stats,
             "set_backends": lambda: r.set_backends([wb(router_case, a, 2)]),
             "drain": lambda: r.drain(router_case.at(a), 1.0)}
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(router_case.errors) as raised:
            async with asyncio.timeout(router_case.bound):
                await call()
        assert time.monotonic() - started < router_case.bound, name
        assert str(raised.value) and "\n" not in str(raised.value), name    # one line for the user
    async with asyncio.timeout(router_case.bound):
        try:
            told = await r.verify([wb(router_case, a, 1)])
        except router_case.errors:
            told = None
    assert told is None                                      # cannot tell; never "yes"


async def test_a_router_that_never_answers_times_out_with_its_error(router_case: RouterCase, base: Path) -> None:
    async with router_case.hung(base / "hung") as r:
        started = time.monotonic()
        with pytest.raises(router_case.errors):
            async with asyncio.timeout(router_case.bound):
                await r.stats()
        assert time.monotonic() - started < router_case.bound
