"""The HAProxy router against a real HAProxy on loopback and real aiohttp backends: traffic really splits
by weight, drain waits for sessions in flight, verify sees changes made behind its back, and refusals
(unknown backend, too few slots, a socket without admin rights) happen before any traffic moves."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from shipyard.routers.base import WeightedBackend
from shipyard.routers.haproxy import HaproxyError, HaproxyRouter, UnixSocketChannel

try:  # works whether or not tests/ is a package
    from .haproxy_helpers import Haproxy, running_haproxy
    from .router_helpers import LiveBackend, start_backend
except ImportError:
    from haproxy_helpers import Haproxy, running_haproxy
    from router_helpers import LiveBackend, start_backend

pytestmark = [pytest.mark.haproxy, pytest.mark.timeout(90)]


@pytest.fixture
async def haproxy() -> AsyncIterator[Haproxy]:
    async with running_haproxy(slots=4) as hx:
        yield hx


@pytest.fixture
async def live() -> AsyncIterator[list[LiveBackend]]:
    backends = [await start_backend(name) for name in ("a", "b", "c", "d", "e")]
    yield backends
    for b in backends:
        await b.stop()


def wb(backend: LiveBackend, weight: int) -> WeightedBackend:
    return WeightedBackend(backend.address, weight, f"rev-{backend.name}", backend.name)


def router(hx: Haproxy, backend: str = "app") -> HaproxyRouter:
    return HaproxyRouter(hx.channel(), backend, listen=hx.listen)


async def served(url: str, n: int) -> Counter[str]:
    """Who answered each of `n` sequential requests (a failed request counts as "failed")."""
    seen: Counter[str] = Counter()
    async with httpx.AsyncClient(timeout=10.0) as client:
        for _ in range(n):
            try:
                resp = await client.get(url + "/")
                seen[resp.headers.get("X-Backend", f"status {resp.status_code}")] += 1
            except httpx.HTTPError:
                seen["failed"] += 1
    return seen


async def state_lines(hx: Haproxy) -> list[str]:
    """The slots' rows of `show servers state`, without the seconds-since-change column (it ticks)."""
    answer = await UnixSocketChannel(hx.socket).send("show servers state app")
    return [" ".join(p for i, p in enumerate(line.split()) if i != 9)
            for line in answer.splitlines() if line.startswith("3 app ")]


async def test_ensure_reports_the_front_and_weights_split_traffic(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    assert await r.ensure() == haproxy.listen
    a, b, c = live[:3]
    await r.set_backends([wb(a, 30), wb(b, 10), wb(c, 0)])
    seen = await served(haproxy.url, 400)
    # roundrobin with weights 3:1 is exact over full cycles; the tolerance covers a check flapping mid-run
    assert abs(seen["a"] - 300) <= 20 and abs(seen["b"] - 100) <= 20, seen
    assert seen["c"] == 0 and seen["failed"] == 0, seen
    assert {(x.address, x.weight) for x in await r.backends()} == {(a.address, 30), (b.address, 10),
                                                                   (c.address, 0)}
    stats = await r.stats()
    assert stats["per_backend"][a.address]["requests"] == seen["a"]
    assert stats["per_revision"]["rev-b"]["requests"] == seen["b"]


async def test_weights_above_256_are_scaled_in_proportion(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    a, b = live[:2]
    await r.set_backends([wb(a, 900), wb(b, 300)])          # 3:1, as 256:85
    assert {(x.address, x.weight) for x in await r.backends()} == {(a.address, 256), (b.address, 85)}
    assert await r.verify([wb(a, 900), wb(b, 300)]) is True
    seen = await served(haproxy.url, 200)
    assert seen["failed"] == 0 and 130 <= seen["a"] <= 170, seen


async def test_slots_are_stable_and_a_removed_backend_drains(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    a, b, c = live[:3]
    await r.set_backends([wb(a, 1), wb(b, 1)])
    before = {s.address: s.name for s in await r.slots() if s.serving}
    await r.set_backends([wb(b, 1), wb(c, 1)])
    slots = {s.name: s for s in await r.slots()}
    after = {s.address: s.name for s in slots.values() if s.serving}
    assert after[b.address] == before[b.address]                  # b kept its slot
    assert slots[before[a.address]].draining and slots[before[a.address]].weight == 0
    assert await r.drain(a.address, 5.0) == 0
    assert slots[before[a.address]].name in {s.name for s in await r.slots() if s.in_maint}
    seen = await served(haproxy.url, 40)
    assert set(seen) == {"b", "c"}, seen


async def test_drain_waits_for_a_request_in_flight(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    a, b = live[:2]
    await r.set_backends([wb(a, 1)])
    async with httpx.AsyncClient(timeout=30.0) as client:
        held = asyncio.create_task(client.get(haproxy.url + "/wait/k1"))
        await asyncio.wait_for(a.began("k1").wait(), 10)
        await r.set_backends([wb(b, 1)])
        draining = asyncio.create_task(r.drain(a.address, 20.0))
        # Held for as long as the request is: a drain that returned now would be a defect (never a flake).
        done, _ = await asyncio.wait({draining}, timeout=0.5)
        assert not done
        assert (await r.stats())["per_backend"][a.address]["sessions"] == 1
        a.gate("k1").set()
        assert await asyncio.wait_for(draining, 20) == 0
        resp = await held
        assert resp.status_code == 200 and resp.headers["X-Backend"] == "a"


async def test_drain_timeout_returns_sessions_left(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    a, b = live[:2]
    await r.set_backends([wb(a, 1)])
    async with httpx.AsyncClient(timeout=30.0) as client:
        held = asyncio.create_task(client.get(haproxy.url + "/wait/k2"))
        await asyncio.wait_for(a.began("k2").wait(), 10)
        await r.set_backends([wb(b, 1)])
        assert await r.drain(a.address, 0.2) == 1
        slot = next(s for s in await r.slots() if s.address == a.address)
        assert slot.draining                 # not put in maint while a session is left
        a.gate("k2").set()
        assert (await held).status_code == 200


async def test_verify_sees_an_out_of_band_change(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    a, b = live[:2]
    wanted = [wb(a, 10), wb(b, 10)]
    await r.set_backends(wanted)
    assert await r.verify(wanted) is True
    slot = next(s for s in await r.slots() if s.address == b.address)
    assert (await UnixSocketChannel(haproxy.socket).send(f"set server app/{slot.name} weight 3")).strip() == ""
    assert await r.verify(wanted) is False
    await r.set_backends(wanted)
    assert await r.verify(wanted) is True
    await UnixSocketChannel(haproxy.socket).send(f"set server app/{slot.name} state maint")
    assert await r.verify(wanted) is False


async def test_verify_cannot_tell_when_haproxy_is_gone(haproxy: Haproxy) -> None:
    r = HaproxyRouter(UnixSocketChannel(haproxy.socket + ".missing"), "app")
    assert await r.verify([]) is None
    with pytest.raises(HaproxyError, match=r"cannot reach HAProxy's runtime API at .*missing"):
        await r.backends()


async def test_unknown_backend_is_one_line_and_nothing_changes(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    await r.set_backends([wb(live[0], 1)])
    before = await state_lines(haproxy)
    wrong = router(haproxy, backend="nope")
    with pytest.raises(HaproxyError) as err:
        await wrong.set_backends([wb(live[1], 1)])
    assert str(err.value) == "HAProxy has no backend 'nope'"
    with pytest.raises(HaproxyError, match="no backend 'nope'"):
        await wrong.ensure()
    assert not [line for line in haproxy.sent if line.startswith("set server nope")]
    assert await state_lines(haproxy) == before


async def test_a_refused_command_stops_before_traffic_moves(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    await r.set_backends([wb(live[0], 1)])
    before = await state_lines(haproxy)
    operator = HaproxyRouter(UnixSocketChannel(haproxy.operator_socket), "app")
    with pytest.raises(HaproxyError, match=r"refused `set server app/app\d addr .*`: Permission denied"):
        await operator.set_backends([wb(live[0], 1), wb(live[1], 1)])
    assert await state_lines(haproxy) == before
    assert set(await served(haproxy.url, 10)) == {"a"}


async def test_slot_exhaustion_is_refused_before_any_command(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    with pytest.raises(HaproxyError, match=r"has 4 server slots, 4 free: 5 more are needed"):
        await r.set_backends([wb(b, 1) for b in live])
    assert haproxy.sent and not [line for line in haproxy.sent if line.startswith("set ")]
    with pytest.raises(HaproxyError, match="same address appears twice"):
        await r.set_backends([wb(live[0], 1), wb(live[0], 2)])
    assert not [line for line in haproxy.sent if line.startswith("set ")]


async def test_ensure_refuses_a_front_nobody_listens_on(haproxy: Haproxy) -> None:
    r = HaproxyRouter(haproxy.channel(), "app", listen="127.0.0.1:1")
    with pytest.raises(HaproxyError, match=r"nothing listens on 127.0.0.1:1"):
        await r.ensure()


async def test_a_swap_takes_well_under_a_second(haproxy: Haproxy, live: list[LiveBackend]) -> None:
    r = router(haproxy)
    a, b, c, d = live[:4]
    await r.set_backends([wb(a, 1), wb(b, 1)])
    timings = []
    for old, new in (((a, b), (c, d)), ((c, d), (a, b)), ((a, b), (c, d))):
        started = time.perf_counter()
        await r.set_backends([wb(new[0], 1), wb(new[1], 1)])      # includes the read-back
        timings.append(time.perf_counter() - started)
        await asyncio.gather(*(r.drain(x.address, 5.0) for x in old))
    print(f"haproxy 2-backend swap seconds: {[round(t, 4) for t in timings]}")
    assert min(timings) < 1.0
    assert set(await served(haproxy.url, 20)) == {"c", "d"}


async def test_a_socket_that_never_answers_is_a_timeout() -> None:
    where = Path(tempfile.mkdtemp(prefix="shy-mute-", dir="/tmp"))      # short: unix socket paths are limited
    path = str(where / "s")
    accepted = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()          # reads the command, answers nothing until the client goes
        writer.close()

    server = await asyncio.start_unix_server(mute, path)
    try:
        r = HaproxyRouter(UnixSocketChannel(path, timeout=0.3), "app")
        with pytest.raises(HaproxyError, match=r"did not answer within 0.3s"):
            await r.set_backends([])
        assert accepted.is_set()
        assert await r.verify([]) is None
    finally:
        server.close()
        await server.wait_closed()
        shutil.rmtree(where, ignore_errors=True)
