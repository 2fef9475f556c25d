"""What the engine records and shows tells the truth: a successful deploy's cleanup is not a rollback step,
a later rollback does not re-stamp finished_at, rollback steps name revisions, an instance that exits at
once is reported with its exit code and log, health.changed is not repeated, and a probe the start period
forgives is no warning."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine_env import git

from shipyard.config.checks import ExecCheck
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.settings import HookSpec
from shipyard.store import deployments as dq
from shipyard.store import events as eq
from shipyard.store import steps as sq


def _steps(e: Any, dep_id: str) -> list[tuple[str, str, str]]:
    with e.store.session() as s:
        return [(st.phase, st.kind, st.description) for st in sq.list_steps(s, dep_id)]


def _events(e: Any, dep_id: str, kind: str) -> list[Any]:
    with e.store.session() as s:
        return eq.list_events(s, deployment_id=dep_id, kind=kind, newest_first=False)


async def test_a_successful_deploys_cleanup_is_not_a_rollback_step(env: Any) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    env.listener = lambda kind, data: seen.append((kind, data))
    env.settings = replace(env.settings, hooks={"cleanup": HookSpec("echo cleaning", 5)})
    outcome = await deployer.deploy(env, "v1")
    assert outcome.state is DeployState.SUCCEEDED
    steps = _steps(env, outcome.deployment_id)
    assert ("finish", "hook", "hook cleanup") in steps
    assert not [st for st in steps if st[0] == "rollback"], steps
    assert [d["phase"] for k, d in seen if k == "step.started" and d["description"] == "hook cleanup"] == ["finish"]


async def test_a_later_rollback_keeps_finished_at_and_names_the_revision(env: Any, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    second = await deployer.deploy(env, "v2")
    with env.store.session() as s:
        ended = dq.get_deployment(s, second.deployment_id).finished_at
    await asyncio.sleep(0.05)
    flip = await deployer.rollback(env)
    v1 = git(repo, "rev-parse", "v1")
    with env.store.session() as s:
        row = dq.get_deployment(s, second.deployment_id)
    assert row.state == "rolled_back" and row.finished_at == ended, "finished_at re-stamped by the rollback"
    assert row.reason == f"rolled back by {flip.deployment_id} to {v1[:8]} (v1)"


async def test_a_flip_names_revisions_not_new_and_old(env: Any, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    await deployer.deploy(env, "v2")
    flip = await deployer.rollback(env)
    v1, v2 = (git(repo, "rev-parse", t)[:8] for t in ("v1", "v2"))
    texts = [d for _, _, d in _steps(env, flip.deployment_id)]
    assert texts[0] == f"route 100% to {v1} (v1) (3 instances)", texts
    assert texts[2] == f"retire {v2} (v2) instances (keep 0 in service)", texts
    [started] = _events(env, flip.deployment_id, "deploy.started")
    [requested] = _events(env, flip.deployment_id, "rollback.requested")
    assert started.data["steps"] == texts and f"{v1} (v1)" in requested.message
    assert not any(" new" in t or "old" in t.replace("hold", "") for t in texts), texts


async def test_rollback_steps_name_the_revisions(env: Any, repo: Path) -> None:
    from test_engine import mark_bad

    await deployer.deploy(env, "v1")
    mark_bad(env, "v2", repo)
    outcome = await deployer.deploy(env, "v2")
    assert outcome.state is DeployState.ROLLED_BACK
    v1, v2 = (git(repo, "rev-parse", t)[:8] for t in ("v1", "v2"))
    rollback = [d for phase, _, d in _steps(env, outcome.deployment_id) if phase == "rollback"]
    assert rollback == [f"ensure {v1} (v1) instances run", f"route all traffic to {v1} (v1)",
                        f"drain {v2} (v2) instances", f"stop {v2} (v2) instances"]
    deploy = [d for phase, _, d in _steps(env, outcome.deployment_id) if phase == "deploy"]
    assert deploy[0] == "export and build release" and f"start {v2} (v2) instances (to 1)" in deploy
    [done] = _events(env, outcome.deployment_id, "rollback.completed")
    assert f"{v1} (v1) serves again" in done.message


async def test_an_instance_that_exits_at_once_is_reported_with_its_exit_code_and_log(env: Any, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    v2 = git(repo, "rev-parse", "v2")
    orig = env.target.start
    slow_start = env.settings.health.model_copy(update={"start_period": 60})
    env.settings = replace(env.settings, health=slow_start, health_wait=60)

    async def start(spec: Any, count: int) -> Any:
        out = await orig(spec, count)
        if spec.revision == v2:
            for inst in out:
                (env.bad_dir / inst.address.rsplit(":", 1)[1]).touch()   # refuses connections, as a dead app does
                env.target.crash(inst.id, 3)
        return out

    env.target.start = start
    t0 = asyncio.get_running_loop().time()
    outcome = await deployer.deploy(env, "v2")
    assert asyncio.get_running_loop().time() - t0 < 20, "waited out the health deadline instead"
    assert outcome.state is DeployState.ROLLED_BACK
    assert "exited with code 3 right after it started" in (outcome.reason or ""), outcome.reason
    assert "log: /logs/api-stg-" in (outcome.reason or ""), outcome.reason


async def test_health_changed_is_said_once_per_change(env: Any) -> None:
    await deployer.deploy(env, "v1")
    outcome = await deployer.deploy(env, "v2")     # rolling one at a time: each wait covers every new instance
    with env.store.session() as s:
        waits = [st for st in sq.list_steps(s, outcome.deployment_id) if st.kind == "wait_healthy"]
    assert len(waits) == 3 and len(waits[-1].detail["healthy"]) == 3
    healthy = [e.data["address"] for e in _events(env, outcome.deployment_id, "health.changed")
               if e.data["state"] == "healthy"]
    assert len(healthy) == 3 and len(set(healthy)) == 3, healthy


async def test_a_probe_forgiven_by_the_start_period_is_no_warning(env: Any, tmp_path: Path) -> None:
    ok = tmp_path / "ok"
    ok.mkdir()
    # Each instance's first probe fails (it is "booting"), every later one passes: no timing involved.
    booting = ExecCheck(type="exec", command=f'test -e "{ok}/$HEALTH_PORT" || {{ touch "{ok}/$HEALTH_PORT"; exit 1; }}',
                        interval=0.05, timeout=2, healthy_threshold=1, unhealthy_threshold=3, start_period=30,
                        deadline=20)
    env.settings = replace(env.settings, instances=1, health=booting)
    outcome = await deployer.deploy(env, "v1")
    assert outcome.state is DeployState.SUCCEEDED
    assert _events(env, outcome.deployment_id, "health.probe_failed") == [], "a booting instance was a warning"
    with env.store.session() as s:
        [wait] = [st for st in sq.list_steps(s, outcome.deployment_id) if st.kind == "wait_healthy"]
    assert list(wait.detail["forgiven"].values()) == ["exec: exit 1"], wait.detail   # kept, quietly

    env.settings = replace(env.settings, health=booting.model_copy(update={"start_period": 0}))
    again = await deployer.deploy(env, "v2")                   # outside a start period a failure is news
    assert again.state is DeployState.SUCCEEDED
    assert len(_events(env, again.deployment_id, "health.probe_failed")) == 1


async def test_a_redeploy_of_the_same_revision_names_the_sets_by_whose(env: Any, repo: Path) -> None:
    await deployer.deploy(env, "v1")
    env.settings = replace(env.settings, environ={"A": "2"}, hooks={"before_traffic": HookSpec("exit 1", 5)})
    outcome = await deployer.deploy(env, "v1")                 # a config change only: same revision
    v1 = git(repo, "rev-parse", "v1")[:8]
    rollback = [d for phase, _, d in _steps(env, outcome.deployment_id) if phase == "rollback"]
    assert f"route all traffic to the previous {v1} (v1)" in rollback, rollback
    assert f"stop this deployment's {v1} (v1) instances" in rollback, rollback
