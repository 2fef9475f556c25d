"""The engine against FakeTarget/FakeRouter, with a real git repo and a real SQLite store.

The `repo` and `env` fixtures come from conftest.py (built by engine_env): health uses exec checks that
look for a marker file per instance port, so a test decides which instances are unhealthy without any
network.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from engine_env import git

from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.settings import HookSpec
from shipyard.store import deployments as dq
from shipyard.store import events as eq
from shipyard.store import leases as lq
from shipyard.store import steps as sq
from shipyard.strategies import BlueGreen, Canary, CanaryStep, Rolling


def mark_bad(e, revision_tag: str, repo: Path) -> None:
    """Every instance of this revision started from now on fails its health check."""
    sha = git(repo, "rev-parse", revision_tag)
    orig = e.target.start

    async def start(spec, count):
        out = await orig(spec, count)
        if spec.revision == sha:
            for inst in out:
                (e.bad_dir / inst.address.rsplit(":", 1)[1]).touch()
        return out
    e.target.start = start


async def cut_off_midway(e, ref: str, serving_rev: str) -> str:
    """Let a run move some traffic, then stop it dead as if its process was killed: the deployment stays
    in_progress and its lease is left to a dead owner (expiring in 10 ms). Returns its id."""
    task = asyncio.create_task(deployer.deploy(e, ref))
    while not any(b.revision != serving_rev for b in e.router.current):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    dead = "somehost-that-is-gone:1:1"
    with e.store.session() as s:
        [dep] = dq.find_unfinished(s, service="api", env="stg")
        assert dep.state == "in_progress"
        dq.update_deployment(s, dep.id, owner=dead)
        lq.release(s, "api", "stg", dep.id)
        lq.try_acquire(s, "api", "stg", dep.id, dead, 0.01)
    await asyncio.sleep(0.05)  # let that lease expire
    return str(dep.id)


def states(e, dep_id: str):
    with e.store.session() as s:
        d = dq.get_deployment(s, dep_id)
        return d.state, d.reason, [(r.phase, r.kind, r.state) for r in sq.list_steps(s, dep_id)]


async def test_first_deploy_then_rolling_update_keeps_previous_warm(env, repo: Path) -> None:
    first = await deployer.deploy(env, "v1")
    assert first.state is DeployState.SUCCEEDED
    v1 = git(repo, "rev-parse", "v1")
    assert env.router.serving_revisions() == {v1} and len(env.router.current) == 3
    [release] = (env.releases.root / "api").glob(f"{v1}-*")
    assert (release / "BUILT").read_text().strip() == "built"

    second = await deployer.deploy(env, "v2")
    v2 = git(repo, "rev-parse", "v2")
    assert second.state is DeployState.SUCCEEDED
    assert env.router.serving_revisions() == {v2}
    # Rolling: every intermediate routing keeps 3 serving, mixing revisions one instance at a time.
    mixes = [sorted(b.revision[:1] for b in h if b.weight > 0) for h in env.router.history[1:]]
    assert all(len(m) == 3 for m in mixes)
    # The old set is warm (not stopped) for keep_previous.
    old = [i for i in env.target.running.values() if i.revision == v1]
    assert len(old) == 3 and all(env.target.warm_until.get(i.id) for i in old)
    with env.store.session() as s:
        d = dq.get_deployment(s, second.deployment_id)
        assert d.previous_revision == v1 and d.finished_at is not None
        kinds = [ev.kind for ev in eq.list_events(s, deployment_id=second.deployment_id, limit=None,
                                                     newest_first=False)]
    assert kinds[0] == "deploy.queued" and "deploy.started" in kinds and kinds[-1] == "deploy.succeeded"


@pytest.mark.parametrize("strategy", [Rolling(drain_timeout=1), BlueGreen(drain_timeout=1),
                                      Canary(steps=(CanaryStep(34, 0.1), CanaryStep(100, 0)), drain_timeout=1)])
async def test_unhealthy_release_rolls_back_to_the_old_revision(env, repo: Path, strategy) -> None:
    env.settings = replace(env.settings, strategy=strategy)
    assert (await deployer.deploy(env, "v1")).state is DeployState.SUCCEEDED
    mark_bad(env, "v3", repo)
    outcome = await deployer.deploy(env, "v3")
    assert outcome.state is DeployState.ROLLED_BACK
    assert "unhealthy" in (outcome.reason or "")
    v1 = git(repo, "rev-parse", "v1")
    assert env.router.serving_revisions() == {v1} and len(env.router.current) == 3
    assert all(i.revision == v1 for i in env.target.running.values()), "new instances stopped"
    state, _, steps = states(env, outcome.deployment_id)
    assert state == "rolled_back" and ("deploy", "wait_healthy", "failed") in steps
    assert any(p == "rollback" for p, _, _ in steps)


async def test_build_failure_fails_without_touching_anything(env, repo: Path) -> None:
    assert (await deployer.deploy(env, "v1")).state is DeployState.SUCCEEDED
    before = list(env.router.current)
    env.settings = replace(env.settings, build="echo broken >&2; exit 3")
    outcome = await deployer.deploy(env, "v2")
    assert outcome.state is DeployState.FAILED
    assert "build" in outcome.reason and "exited 3" in outcome.reason and "broken" in outcome.reason
    assert env.router.current == before
    assert not list((env.releases.root / "api").glob(f"{git(repo, 'rev-parse', 'v2')}*"))


async def test_failing_hook_rolls_back_and_keeps_its_output(env, repo: Path) -> None:
    assert (await deployer.deploy(env, "v1")).state is DeployState.SUCCEEDED
    env.settings = replace(env.settings, hooks={
        "before_traffic": HookSpec('echo "checking $SHIPYARD_REVISION"; exit 4', 5),
        "on_failure": HookSpec("echo on-failure-ran", 5)})
    outcome = await deployer.deploy(env, "v2")
    assert outcome.state is DeployState.ROLLED_BACK and "hook before_traffic exited 4" in outcome.reason
    with env.store.session() as s:
        rows = sq.list_steps(s, outcome.deployment_id)
        hook = next(r for r in rows if r.kind == "hook" and r.phase == "deploy")
        assert "checking " + git(repo, "rev-parse", "v2") in hook.output
        assert any("on-failure-ran" in (r.output or "") for r in rows if r.phase == "rollback")


async def test_hook_timeout_is_a_failure(env, repo: Path) -> None:
    env.settings = replace(env.settings, hooks={"before_install": HookSpec("sleep 30", 0.3)})
    outcome = await deployer.deploy(env, "v1")
    assert outcome.state is DeployState.FAILED and "timed out" in outcome.reason


async def test_manual_rollback_is_a_traffic_flip_while_warm(env, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    await deployer.deploy(env, "v2")
    started_before = len(env.target.running)
    outcome = await deployer.rollback(env)
    assert outcome.state is DeployState.SUCCEEDED
    assert env.router.serving_revisions() == {git(repo, "rev-parse", "v1")}
    assert len(env.target.running) == started_before, "no instance started: the warm set took traffic"
    with env.store.session() as s:
        undone = dq.list_deployments(s, kind="deploy", limit=1)[0]
        assert undone.state == "rolled_back" and outcome.deployment_id in undone.reason


async def test_rollback_redeploys_when_the_previous_set_expired(env, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    await deployer.deploy(env, "v2")
    v1 = git(repo, "rev-parse", "v1")
    await env.target.stop([i for i in env.target.running.values() if i.revision == v1], 1)
    outcome = await deployer.rollback(env)
    assert outcome.state is DeployState.SUCCEEDED
    assert env.router.serving_revisions() == {v1}


async def test_nothing_to_roll_back(env) -> None:
    from shipyard.errors import UsageError
    with pytest.raises(UsageError, match="no successful deployment"):
        await deployer.rollback(env)
    await deployer.deploy(env, "v1")
    with pytest.raises(UsageError, match="first deployment"):
        await deployer.rollback(env)


async def test_unknown_revision_is_a_usage_error(env) -> None:
    from shipyard.errors import RevisionNotFoundError
    with pytest.raises(RevisionNotFoundError, match="nope"):
        await deployer.deploy(env, "nope")


async def test_no_wait_refuses_naming_the_holder(env) -> None:
    from shipyard.errors import LeaseHeldError
    with env.store.session() as s:
        lq.try_acquire(s, "api", "stg", "deploy-other", env.owner, 60)  # a live holder
    with pytest.raises(LeaseHeldError, match="deploy-other"):
        await deployer.deploy(env, "v1", wait=False)
    with env.store.session() as s:
        assert dq.list_deployments(s, limit=1)[0].state == "cancelled"


async def test_second_deploy_queues_behind_the_first(env, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    env.settings = replace(env.settings, hooks={"before_install": HookSpec("sleep 0.5", 5)})
    first = asyncio.create_task(deployer.deploy(env, "v2"))
    second = asyncio.create_task(deployer.deploy(env, "v3"))
    a, b = await asyncio.gather(first, second)
    assert a.state is b.state is DeployState.SUCCEEDED
    with env.store.session() as s:
        rows = {d.id: d for d in dq.list_deployments(s, limit=3)}
    da, db = rows[a.deployment_id], rows[b.deployment_id]
    assert da.finished_at <= db.started_at or db.finished_at <= da.started_at, "runs never overlap"


async def test_a_deploy_started_while_this_process_runs_one_waits_for_it(env, repo: Path) -> None:
    """As in `shipyard serve` (a webhook while the poller's deploy runs): the second does not take the first,
    whose owner is this very process, over as if it had died."""
    from shipyard.testing.wait import wait_until_async

    await deployer.deploy(env, "v1")
    env.settings = replace(env.settings, hooks={"before_install": HookSpec("sleep 0.5", 5)})
    first = asyncio.create_task(deployer.deploy(env, "v2"))

    def running() -> bool:
        with env.store.session() as s:
            return dq.list_deployments(s, limit=1)[0].state == "in_progress"
    await wait_until_async(running, 10, "the first deploy to start")
    second = asyncio.create_task(deployer.deploy(env, "v3"))
    a, b = await asyncio.gather(first, second)
    assert a.state is b.state is DeployState.SUCCEEDED, (a, b)
    with env.store.session() as s:
        assert eq.list_events(s, kind="recover.started") == []


async def test_recover_rolls_back_a_run_whose_owner_died(env, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    v1 = git(repo, "rev-parse", "v1")
    dep_id = await cut_off_midway(env, "v2", v1)
    outcome = await deployer.recover_one(env, dep_id)
    assert outcome is not None and outcome.state is DeployState.ROLLED_BACK
    assert env.router.serving_revisions() == {v1}
    assert all(i.revision == v1 for i in env.target.running.values())
    assert "died" in outcome.reason


async def test_a_new_deploy_first_rolls_back_a_dead_run(env, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    v1 = git(repo, "rev-parse", "v1")
    dead_id = await cut_off_midway(env, "v2", v1)
    outcome = await deployer.deploy(env, "v3")
    assert outcome.state is DeployState.SUCCEEDED
    assert env.router.serving_revisions() == {git(repo, "rev-parse", "v3")}
    with env.store.session() as s:
        dead = dq.get_deployment(s, dead_id)
        assert dead.state == "rolled_back" and "died" in dead.reason
        assert dq.get_deployment(s, outcome.deployment_id).previous_revision == v1
