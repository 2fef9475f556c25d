"""The release group executor over the engine's unit-test world (engine_env: a real git repo and SQLite
store, FakeTarget/FakeRouter per member): waves, one abort in reverse wave order, members never started,
and the group's hold on every member's lease."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from engine_env import git
from test_engine import mark_bad

from shipyard.engine import deployer, groups
from shipyard.errors import LeaseHeldError, ShipyardError
from shipyard.groups.plan import plan_release
from shipyard.store import deployments as dq
from shipyard.store import groups as gq
from shipyard.store import leases as lq
from shipyard.store.owner import current_owner
from shipyard.testing import FakeRouter, FakeTarget

WAVES = [["a", "b"], ["c", "d"]]


@pytest.fixture
def envs(env: deployer.Environment) -> dict[str, deployer.Environment]:
    out = {}
    for n, svc in enumerate(("a", "b", "c", "d")):
        e = replace(env, settings=replace(env.settings, service=svc, listen=f"127.0.0.1:{n + 2}", instances=2),
                    target=FakeTarget(svc, "stg"), router=FakeRouter())
        e.bad_dir = env.bad_dir  # type: ignore[attr-defined]
        out[svc] = e
    return out


async def release(envs: dict[str, deployer.Environment], ref: str, **kw: object) -> groups.GroupOutcome:
    plan = plan_release("platform", "stg", WAVES, dict.fromkeys(envs, ref), dict.fromkeys(envs, "stg"))
    store = next(iter(envs.values())).store
    return await groups.release(store, plan, lambda svc: envs[svc], actor="tester", owner=current_owner(),
                                **kw)  # type: ignore[arg-type]


async def test_waves_in_order_holding_every_lease(envs, repo: Path) -> None:
    store = envs["a"].store
    seen: list[tuple[str, set[str]]] = []

    def say(service: str, message: str) -> None:
        if message.startswith("wave "):
            with store.session() as s:
                seen.append((message, {f"{x.service}:{x.deployment_id}" for x in lq.list_leases(s)}))

    first = await release(envs, "v1", say=say)
    assert first.state == "succeeded" and [m["state"] for m in first.members] == ["succeeded"] * 4
    # Through both waves the group held all four leases under its own id; none is left after.
    assert [m for m, _ in seen] == ["wave 1: a, b", "wave 2: c, d"]
    assert all(held == {f"{s}:{first.group_id}" for s in "abcd"} for _, held in seen)
    with store.session() as s:
        assert lq.list_leases(s) == []
        wave1_end = max(dq.get_deployment(s, m["deployment_id"]).finished_at for m in first.members[:2])
        wave2_start = min(dq.get_deployment(s, m["deployment_id"]).started_at for m in first.members[2:])
    assert wave2_start >= wave1_end
    v1 = git(repo, "rev-parse", "v1")
    assert all(e.router.serving_revisions() == {v1} for e in envs.values())


async def test_a_failing_last_wave_puts_every_member_back_last_wave_first(envs, repo: Path) -> None:
    await release(envs, "v1")
    mark_bad(envs["d"], "v2", repo)
    out = await release(envs, "v2")
    assert out.state == "rolled_back" and out.reason and out.reason.startswith("aborted: d:")
    states = {m["service"]: m for m in out.members}
    assert {s: m["state"] for s, m in states.items()} == dict.fromkeys("abcd", "rolled_back")
    v1 = git(repo, "rev-parse", "v1")
    assert all(e.router.serving_revisions() == {v1} for e in envs.values())
    store = envs["a"].store
    with store.session() as s:
        flips = {x: dq.get_deployment(s, states[x]["rollback_id"]) for x in "ab"}
        assert all(f is not None and f.strategy == "traffic_flip" and f.state == "succeeded" for f in flips.values())
        # The last wave was back before the first wave's flips began, and b (placed after a) went first.
        last_wave_end = max(dq.get_deployment(s, states[x]["deployment_id"]).finished_at for x in "cd")
        assert min(f.started_at for f in flips.values()) >= last_wave_end
        assert lq.list_leases(s) == []


async def test_a_failing_first_wave_never_starts_the_second(envs, repo: Path) -> None:
    await release(envs, "v1")
    mark_bad(envs["a"], "v2", repo)
    out = await release(envs, "v2")
    states = {m["service"]: m for m in out.members}
    assert out.state == "rolled_back"
    assert states["a"]["state"] == "rolled_back" and states["b"]["state"] in ("rolled_back", "cancelled")
    for svc in "cd":
        assert states[svc]["state"] == "cancelled" and states[svc]["deployment_id"] is None
    v1 = git(repo, "rev-parse", "v1")
    assert all(e.router.serving_revisions() == {v1} for e in envs.values())


async def test_a_busy_member_with_no_wait_refuses_the_group_before_anything_moves(envs, repo: Path) -> None:
    store = envs["c"].store
    with store.session() as s:
        assert lq.try_acquire(s, "c", "stg", "deploy-other", "otherhost:1:1", 60) is not None
    with pytest.raises(LeaseHeldError, match="c/stg is being deployed by deploy-other"):
        await release(envs, "v1", wait=False)
    with store.session() as s:
        [run] = gq.list_groups(s)
        assert run.state == "cancelled" and {m.state for m in gq.members(s, run.id)} == {"cancelled"}
        assert [x.service for x in lq.list_leases(s)] == ["c"]        # what it took, it gave back
        assert dq.list_deployments(s, limit=10) == []


async def test_a_member_run_outside_its_groups_lease_is_refused(envs) -> None:
    e = envs["a"]
    plan = plan_release("platform", "stg", WAVES, {}, dict.fromkeys(envs, "stg"))
    with e.store.session() as s:
        e.group = gq.create_group(s, name="platform", env="stg", plan=plan, actor="t", owner=current_owner()).id
    with pytest.raises(LeaseHeldError, match="does not hold its lease"):
        await deployer.deploy(e, "v1")
    assert e.router.current == [] and await e.target.instances() == []


async def test_recover_judges_another_hosts_group_by_its_leases(envs) -> None:
    store = envs["a"].store
    plan = plan_release("platform", "stg", WAVES, {}, dict.fromkeys(envs, "stg"))
    other = "otherhost:123:1"            # cannot be inspected from here: only its leases' expiry counts
    with store.session() as s:
        gid = gq.create_group(s, name="platform", env="stg", plan=plan, actor="t", owner=other).id
        gq.set_group(s, gid, "in_progress")
        for svc in plan.services():
            assert lq.try_acquire(s, svc, "stg", gid, other, 60) is not None
    found = await groups.recover_groups(store, lambda svc, env: envs[svc], owner=current_owner(), actor="t")
    assert found == []                                  # its leases are fresh: it lives
    with store.session() as s:
        for svc in plan.services():
            assert lq.try_acquire(s, svc, "stg", gid, other, -1) is not None      # now expired
    [done] = await groups.recover_groups(store, lambda svc, env: envs[svc], owner=current_owner(), actor="t")
    assert done.state == "rolled_back" and {m["state"] for m in done.members} == {"cancelled"}
    with store.session() as s:
        assert lq.list_leases(s) == []


async def test_a_group_that_loses_a_lease_stops_touching_anything(envs, repo: Path, monkeypatch) -> None:
    from shipyard.engine import lease

    monkeypatch.setattr(lease, "LEASE_TTL", 0.3)         # heart-beat every 0.1 s
    await release(envs, "v1")
    target = envs["c"].target
    orig = target.start

    async def slow_start(spec, count):      # c is still deploying when its lease is taken
        await asyncio.sleep(1.0)
        return await orig(spec, count)
    target.start = slow_start  # type: ignore[method-assign]
    store = envs["a"].store

    def say(service: str, message: str) -> None:
        if message.startswith("wave 2"):
            with store.session() as s:      # another process took c's lease over (it thought us dead)
                row = lq.get_lease(s, "c", "stg")
                assert row is not None
                row.deployment_id, row.owner = "deploy-other", "otherhost:1:1"

    with pytest.raises(ShipyardError, match="lost a member's lease to another process; stopped here"):
        await release(envs, "v2", say=say)
    with store.session() as s:
        [run, _] = gq.list_groups(s)
        assert run.state == "in_progress"           # left for whoever holds the lease now
        assert lq.get_lease(s, "c", "stg").deployment_id == "deploy-other"  # type: ignore[union-attr]
