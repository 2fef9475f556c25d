"""The Target contract (shipyard.targets.base.Target), run against every registered target kind with real
processes: start gives running instances reachable at their address, instances() lists them in start
order, stop ends them (ports closed, SIGKILL after the timeout), keep_warm expires them at `until` (None
cancels), and an unreachable host is one of the kind's documented errors within a bound."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from shipyard.domain.types import Instance
from shipyard.targets.base import LaunchSpec

from .harnesses import TargetCase, app_argv

pytestmark = pytest.mark.timeout(60)
DEADLINE = 20.0         # generous: only reached when something is broken


def spec(case: TargetCase, base: Path, *args: str, stop_timeout: float = 5.0) -> LaunchSpec:
    return LaunchSpec(service=case.service, env=case.env, revision="0123456789abcdef", deployment="deploy-contract",
                      cwd=base, argv=app_argv(base / "app.py", *args),
                      environ={"CONTRACT": "1", "BIND_HOST": case.bind},
                      stop_timeout=stop_timeout)


async def answers(instance: Instance) -> dict[str, str]:
    """The instance's own answer at its address, waited for (started is not yet listening)."""
    deadline = time.monotonic() + DEADLINE
    async with httpx.AsyncClient(timeout=5.0) as http:
        while True:
            try:
                resp = await http.get(f"http://{instance.address}/")
                return dict(resp.json())
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{instance.id} never answered at {instance.address}") from None
                await asyncio.sleep(0.05)


def port_closed(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, int(port))) != 0


async def until(pred: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_start_gives_running_instances_reachable_at_their_address(target_case: TargetCase,
                                                                       base: Path) -> None:
    started = await target_case.target.start(spec(target_case, base), 2)
    assert len(started) == 2 and len({i.id for i in started}) == 2 and len({i.address for i in started}) == 2
    for inst in started:
        assert (inst.service, inst.env, inst.revision) == (target_case.service, target_case.env, "0123456789abcdef")
        body = await answers(inst)
        assert body["instance"] == inst.id and body["revision"] == "0123456789abcdef"


async def test_instances_lists_them_in_start_order(target_case: TargetCase, base: Path) -> None:
    t = target_case.target
    assert await t.instances() == []
    first = await t.start(spec(target_case, base), 1)
    second = await t.start(spec(target_case, base), 1)
    assert [i.id for i in await t.instances()] == [first[0].id, second[0].id]


async def test_stop_ends_them_and_closes_their_ports(target_case: TargetCase, base: Path) -> None:
    t = target_case.target
    keep, *gone = await t.start(spec(target_case, base), 3)
    for inst in (keep, *gone):
        await answers(inst)
    await t.stop(gone, timeout=5.0)
    assert all(port_closed(i.address) for i in gone)         # gone when stop returns, not eventually
    assert [i.id for i in await t.instances()] == [keep.id]
    await answers(keep)


async def test_stop_kills_an_instance_that_ignores_sigterm_after_the_timeout(target_case: TargetCase,
                                                                           base: Path) -> None:
    t = target_case.target
    [stubborn] = await t.start(spec(target_case, base, "ignore-term"), 1)
    await answers(stubborn)
    started = time.monotonic()
    await t.stop([stubborn], timeout=0.5)
    assert time.monotonic() - started < 0.5 + 10.0
    assert port_closed(stubborn.address) and await t.instances() == []


async def test_keep_warm_expires_them_at_until_and_none_cancels(target_case: TargetCase, base: Path) -> None:
    t = target_case.target
    expiring, kept = await t.start(spec(target_case, base), 2)
    for inst in (expiring, kept):
        await answers(inst)
    at = time.time() + 1.0
    await t.keep_warm([expiring, kept], at)
    await t.keep_warm([kept], None)                          # cancelled: stays
    assert {i.id for i in await t.instances()} == {expiring.id, kept.id}     # warm until then
    await answers(expiring)

    async def expired() -> bool:
        return expiring.id not in {i.id for i in await t.instances()}
    await until(expired, f"{expiring.id} to expire")
    assert time.time() >= at - 0.05                          # not before its time
    assert port_closed(expiring.address)
    assert [i.id for i in await t.instances()] == [kept.id]  # expired at the same moment, had it not been cancelled
    await answers(kept)


async def test_an_unreachable_host_fails_fast_with_its_error(target_case: TargetCase, base: Path) -> None:
    t = target_case.target
    [inst] = await t.start(spec(target_case, base), 1)
    await target_case.cut()
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "start": lambda: t.start(spec(target_case, base), 1), "instances": t.instances,
        "stop": lambda: t.stop([inst], 1.0), "keep_warm": lambda: t.keep_warm([inst], None)}
    for name, call in calls.items():
        started = time.monotonic()
        with pytest.raises(target_case.errors) as raised:
            async with asyncio.timeout(target_case.bound):
                await call()
        assert time.monotonic() - started < target_case.bound, name
        assert str(raised.value) and "\n" not in str(raised.value), name
