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
from shipyard.targets.base import LaunchSpec, ReportingTarget

from .harnesses import TargetCase, app_argv

pytestmark = pytest.mark.timeout(60)
DEADLINE = 20.0         # generous: only reached when something is broken


def spec(case: TargetCase, base: Path, *args: str, stop_timeout: float = 5.0) -> LaunchSpec:
    return LaunchSpec(service=case.service, env=case.env, revision="0123456789abcdef", deployment="deploy-contract",
                      cwd=base, argv=app_argv(base / "app.py", *args),
                      environ={"CONTRACT": "1", "BIND_HOST": case.bind},
                      stop_timeout=stop_timeout)


async def answers(case: TargetCase, instance: Instance) -> None:
    """The instance itself says it is this instance of this revision, waited for (started is not yet
    listening). A target whose platform reports health (ReportingTarget: ECS, whose addresses are target
    groups) is asked instead: healthy, and listed under this id with this revision."""
    deadline = time.monotonic() + DEADLINE
    if isinstance(case.target, ReportingTarget):
        while (why := await case.target.instance_health(instance.address)) is not None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance.id} never got healthy at {instance.address}: {why}")
            await asyncio.sleep(0.05)
        listed = {i.id: i.revision for i in await case.target.instances()}
        assert listed.get(instance.id) == instance.revision, listed
        return
    async with httpx.AsyncClient(timeout=5.0) as http:
        while True:
            try:
                body = (await http.get(f"http://{instance.address}/")).json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{instance.id} never answered at {instance.address}") from None
                await asyncio.sleep(0.05)
    assert body["instance"] == instance.id and body["revision"] == instance.revision, body


async def gone(case: TargetCase, instance: Instance) -> bool:
    """Nothing serves at its address any more: the port is closed, or (ReportingTarget) it is not healthy."""
    if isinstance(case.target, ReportingTarget):
        return await case.target.instance_health(instance.address) is not None
    host, _, port = instance.address.rpartition(":")
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, int(port))) != 0


async def start(case: TargetCase, base: Path, count: int, *args: str) -> list[Instance]:
    """`count` instances, in as many starts as the target needs: a target that starts fewer at once says
    so with `per_start` (ECS: one service revision per start, which runs desired_count tasks)."""
    per = getattr(case.target, "per_start", None) or count
    out: list[Instance] = []
    while len(out) < count:
        out += await case.target.start(spec(case, base, *args), min(per, count - len(out)))
    return out


def most(case: TargetCase, count: int) -> int:
    """`count`, or fewer when the target says it holds at most `capacity` instances (ECS blue/green: 2)."""
    return min(count, getattr(case.target, "capacity", None) or count)


async def until(pred: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_start_gives_running_instances_reachable_at_their_address(target_case: TargetCase,
                                                                       base: Path) -> None:
    started = await start(target_case, base, 2)
    assert len(started) == 2 and len({i.id for i in started}) == 2 and len({i.address for i in started}) == 2
    for inst in started:
        assert (inst.service, inst.env, inst.revision) == (target_case.service, target_case.env, "0123456789abcdef")
        await answers(target_case, inst)
    per = getattr(target_case.target, "per_start", None)
    if per is not None:                      # more than the target starts at once: refused, nothing started
        with pytest.raises(target_case.errors) as raised:
            await target_case.target.start(spec(target_case, base), per + 1)
        assert "\n" not in str(raised.value)
        assert {i.id for i in await target_case.target.instances()} == {i.id for i in started}


async def test_instances_lists_them_in_start_order(target_case: TargetCase, base: Path) -> None:
    t = target_case.target
    assert await t.instances() == []
    first = await start(target_case, base, 1)
    second = await start(target_case, base, 1)
    assert [i.id for i in await t.instances()] == [first[0].id, second[0].id]


async def test_stop_ends_them_and_closes_their_ports(target_case: TargetCase, base: Path) -> None:
    t = target_case.target
    keep, *stopped = await start(target_case, base, most(target_case, 3))
    for inst in (keep, *stopped):
        await answers(target_case, inst)
    await t.stop(stopped, timeout=5.0)
    assert [await gone(target_case, i) for i in stopped] == [True] * len(stopped)   # when stop returns
    assert [i.id for i in await t.instances()] == [keep.id]
    await answers(target_case, keep)


async def test_stop_kills_an_instance_that_ignores_sigterm_after_the_timeout(target_case: TargetCase,
                                                                           base: Path) -> None:
    t = target_case.target
    # A target that runs an image, not LaunchSpec.argv (ECS: `runs_argv = False`), cannot be handed a
    # process that ignores SIGTERM; ECS kills a task after its container's stopTimeout itself. What still
    # holds for it: stop returns within the bound and the instance is gone.
    [stubborn] = await start(target_case, base, 1, "ignore-term")
    await answers(target_case, stubborn)
    started = time.monotonic()
    await t.stop([stubborn], timeout=0.5)
    assert time.monotonic() - started < 0.5 + 10.0
    assert await gone(target_case, stubborn) and await t.instances() == []


async def test_keep_warm_expires_them_at_until_and_none_cancels(target_case: TargetCase, base: Path) -> None:
    t = target_case.target
    expiring, kept = await start(target_case, base, 2)
    for inst in (expiring, kept):
        await answers(target_case, inst)
    at = time.time() + 1.0
    await t.keep_warm([expiring, kept], at)
    await t.keep_warm([kept], None)                          # cancelled: stays
    assert {i.id for i in await t.instances()} == {expiring.id, kept.id}     # warm until then
    await answers(target_case, expiring)

    async def expired() -> bool:
        return expiring.id not in {i.id for i in await t.instances()}
    await until(expired, f"{expiring.id} to expire")
    assert time.time() >= at - 0.05                          # not before its time
    assert await gone(target_case, expiring)
    assert [i.id for i in await t.instances()] == [kept.id]  # expired at the same moment, had it not been cancelled
    await answers(target_case, kept)


async def test_an_unreachable_host_fails_fast_with_its_error(target_case: TargetCase, base: Path) -> None:
    t = target_case.target
    [inst] = await start(target_case, base, 1)
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
