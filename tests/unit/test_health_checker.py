"""wait_healthy and HealthMonitor driven by a scripted prober: the scheduling and decision logic, fast."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

import pytest

from shipyard.config import HealthCheck, TcpCheck
from shipyard.errors import HealthCheckError
from shipyard.health import HealthMonitor, HealthState, InstancesUnhealthy, ProbeResult, wait_healthy


class ScriptedProber:
    """Answers probes from a per-address script; the last entry repeats forever."""

    def __init__(self, scripts: dict[str, Iterable[bool]]) -> None:
        self.scripts = {address: list(script) for address, script in scripts.items()}
        self.calls: dict[str, int] = dict.fromkeys(scripts, 0)

    def set(self, address: str, *script: bool) -> None:
        self.scripts[address] = list(script)
        self.calls.setdefault(address, 0)

    async def probe(self, check: HealthCheck, address: str) -> ProbeResult:
        script = self.scripts[address]
        ok = script.pop(0) if len(script) > 1 else script[0]
        self.calls[address] += 1
        return ProbeResult(ok, f"{address} says {'yes' if ok else 'no'}", 0.0)


def check(**overrides: float) -> TcpCheck:
    values: dict[str, float] = {"interval": 0.01, "timeout": 1, "start_period": 0, "healthy_threshold": 2,
                                "unhealthy_threshold": 2, **overrides}
    return TcpCheck(type="tcp", **values)  # type: ignore[arg-type]


async def test_returns_when_all_are_healthy() -> None:
    prober = ScriptedProber({"a:1": [True], "b:2": [False, True]})
    changes: list[tuple[str, HealthState]] = []
    states = await wait_healthy(check(), ["a:1", "b:2"], deadline=30, prober=prober,
                                on_change=lambda a, s, r: changes.append((a, s)))
    assert states == {"a:1": HealthState.HEALTHY, "b:2": HealthState.HEALTHY}
    assert sorted(changes) == [("a:1", HealthState.HEALTHY), ("b:2", HealthState.HEALTHY)]
    assert prober.calls["b:2"] == 3


async def test_unhealthy_instance_is_named_with_its_last_detail() -> None:
    prober = ScriptedProber({"good:1": [True], "bad:2": [False]})
    with pytest.raises(InstancesUnhealthy) as info:
        await wait_healthy(check(healthy_threshold=5), ["good:1", "bad:2"], deadline=30, prober=prober)
    err = info.value
    assert isinstance(err, HealthCheckError)
    assert str(err) == "1 of 2 instance(s) unhealthy: bad:2 (unhealthy: bad:2 says no)"
    assert err.states["bad:2"] is HealthState.UNHEALTHY and err.details["good:1"] == "good:1 says yes"


async def test_start_period_forgives_early_failures() -> None:
    prober = ScriptedProber({"a:1": [False] * 5 + [True]})
    states = await wait_healthy(check(start_period=60), ["a:1"], deadline=30, prober=prober)
    assert states["a:1"] is HealthState.HEALTHY and prober.calls["a:1"] == 7


async def test_deadline_names_instances_still_starting() -> None:
    prober = ScriptedProber({"slow:1": [False], "ok:2": [True]})
    started = time.monotonic()
    with pytest.raises(InstancesUnhealthy, match=r"not healthy within 0.3s: slow:1 \(starting: slow:1 says no\)$"):
        await wait_healthy(check(start_period=60, interval=0.05), ["slow:1", "ok:2"], deadline=0.3,
                           prober=prober)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 5                               # generous upper bound for a loaded box


async def test_deadline_is_checked_even_when_interval_is_longer() -> None:
    prober = ScriptedProber({"a:1": [False]})
    started = time.monotonic()
    with pytest.raises(InstancesUnhealthy, match="not healthy within"):
        await wait_healthy(check(start_period=60, interval=30), ["a:1"], deadline=0.2, prober=prober)
    assert time.monotonic() - started < 5 and prober.calls["a:1"] == 2   # at start and at the deadline


async def test_no_addresses_is_trivially_healthy() -> None:
    assert await wait_healthy(check(), [], deadline=1) == {}


async def test_broken_or_async_callbacks_do_not_stop_checks() -> None:
    seen: list[str] = []

    async def record(address: str, state: HealthState, result: ProbeResult) -> None:
        seen.append(address)

    def explode(address: str, state: HealthState, result: ProbeResult) -> None:
        raise RuntimeError("boom")

    prober = ScriptedProber({"a:1": [True]})
    await wait_healthy(check(), ["a:1"], deadline=10, prober=prober, on_change=record)
    await wait_healthy(check(), ["a:1"], deadline=10, prober=prober, on_change=explode)
    assert seen == ["a:1"]


async def test_monitor_reports_transitions_and_membership() -> None:
    prober = ScriptedProber({"a:1": [True], "b:2": [True]})
    changes: asyncio.Queue[tuple[str, HealthState]] = asyncio.Queue()
    monitor = HealthMonitor(check(), ["a:1"], prober=prober,
                            on_change=lambda a, s, r: changes.put_nowait((a, s)))
    async with monitor:
        assert monitor.running
        await asyncio.wait_for(monitor.next_round(), 10)
        assert monitor.states() == {"a:1": HealthState.HEALTHY} and changes.empty()
        prober.set("a:1", False)
        assert await asyncio.wait_for(changes.get(), 10) == ("a:1", HealthState.UNHEALTHY)
        assert monitor.unhealthy() == ["a:1"] and monitor.details()["a:1"] == "a:1 says no"
        monitor.add("b:2", assume_healthy=False)
        assert await asyncio.wait_for(changes.get(), 10) == ("b:2", HealthState.HEALTHY)
        monitor.remove("a:1")
        await asyncio.wait_for(monitor.next_round(), 10)
        assert monitor.states() == {"b:2": HealthState.HEALTHY}
    assert not monitor.running
    calls = dict(prober.calls)
    await asyncio.sleep(0.05)
    assert prober.calls == calls                             # stopped means no more probes


async def test_monitor_start_period_when_not_assumed_healthy() -> None:
    prober = ScriptedProber({"a:1": [False]})
    async with HealthMonitor(check(start_period=60), ["a:1"], prober=prober, assume_healthy=False) as monitor:
        for _ in range(3):
            await asyncio.wait_for(monitor.next_round(), 10)
        assert monitor.states() == {"a:1": HealthState.STARTING}


async def test_start_period_can_count_from_an_earlier_start() -> None:
    prober = ScriptedProber({"a:1": [False]})
    with pytest.raises(InstancesUnhealthy, match="unhealthy: a:1"):
        await wait_healthy(check(start_period=5), ["a:1"], deadline=30, prober=prober,
                           started_at=time.monotonic() - 10)
    assert prober.calls["a:1"] == 2


async def test_malformed_address_is_a_failed_probe() -> None:
    from shipyard.health import probe

    result = await probe(check(), "no-port")
    assert not result.ok and "expected host:port" in result.detail


async def test_reported_health_is_the_targets_word_on_the_checks_schedule() -> None:
    from shipyard.errors import TargetError
    from shipyard.health.checker import ReportedHealth

    verdicts = {"arn:tg/blue": [None], "arn:tg/green": ["target group green: 0 of 2 targets healthy"]}
    asked: list[str] = []

    async def report(address: str) -> str | None:
        asked.append(address)
        if address == "arn:tg/gone":
            raise TargetError("aws elbv2 DescribeTargetHealth arn:tg/gone: TargetGroupNotFound: none")
        return verdicts[address][0]

    runner = ReportedHealth(report)
    ok = await runner.probe(check(), "arn:tg/blue")
    bad = await runner.probe(check(), "arn:tg/green")
    gone = await runner.probe(check(), "arn:tg/gone")
    assert ok.ok and ok.detail == "healthy (as the target reports)"
    assert not bad.ok and bad.detail == "target group green: 0 of 2 targets healthy"
    assert not gone.ok and "TargetGroupNotFound" in gone.detail            # an error is a failed probe, one line
    states = await wait_healthy(check(), ["arn:tg/blue"], deadline=5.0, prober=runner)
    assert states == {"arn:tg/blue": HealthState.HEALTHY}
    with pytest.raises(InstancesUnhealthy, match="0 of 2 targets healthy"):
        await wait_healthy(check(start_period=0.0), ["arn:tg/green"], deadline=5.0, prober=runner)
    assert set(asked) == {"arn:tg/blue", "arn:tg/green", "arn:tg/gone"}   # never a connection to an address
