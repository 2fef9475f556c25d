"""What the engine refuses, and how: a refused request never leaves a deployment queued or in progress, and
is recorded as a `deploy.refused` event saying why; an OS error fails a step like any other error; a frozen
environment refuses deploys and rollbacks unless an override is given, which is recorded."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from engine_env import git

from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.freeze import FreezeOverride
from shipyard.errors import EnvironmentFrozen, LeaseHeldError, RevisionNotFoundError
from shipyard.store import deployments as dq
from shipyard.store import events as eq
from shipyard.store import leases as lq
from shipyard.store import promotions as pq
from shipyard.store import steps as sq

UNFINISHED = ("queued", "in_progress", "rolling_back")


def _events(e: deployer.Environment, kind: str) -> list[Any]:
    with e.store.session() as s:
        return eq.list_events(s, kind=kind, newest_first=False)


def _unfinished(e: deployer.Environment) -> list[tuple[str, str]]:
    with e.store.session() as s:
        return [(d.id, d.state) for d in dq.list_deployments(s, limit=None) if d.state in UNFINISHED]


async def test_an_os_error_in_a_step_fails_the_run_instead_of_leaving_it_in_progress(env: Any) -> None:
    env.settings = replace(env.settings, service="s" * 300)      # what the validator now refuses, bypassed
    outcome = await deployer.deploy(env, "v1")
    assert outcome.state is DeployState.FAILED
    assert "File name too long" in (outcome.reason or ""), outcome.reason
    assert len((outcome.reason or "").splitlines()) == 1
    assert _unfinished(env) == []
    with env.store.session() as s:
        steps = sq.list_steps(s, outcome.deployment_id)
    assert [(st.kind, st.state) for st in steps] == [("prepare", "failed")]


async def test_an_unknown_revision_is_recorded_as_refused(env: Any) -> None:
    with pytest.raises(RevisionNotFoundError):
        await deployer.deploy(env, "nope")
    [refused] = _events(env, "deploy.refused")
    assert "nope" in refused.message and refused.data["actor"] == "tester" and refused.data["ref"] == "nope"
    with env.store.session() as s:
        assert dq.list_deployments(s) == []


async def test_no_wait_refusal_closes_its_row_and_is_recorded(env: Any) -> None:
    with env.store.session() as s:
        lq.try_acquire(s, "api", "stg", "deploy-other", env.owner, 60)  # a live holder
    with pytest.raises(LeaseHeldError):
        await deployer.deploy(env, "v1", wait=False)
    [refused] = _events(env, "deploy.refused")
    assert "deploy-other" in refused.message and refused.deployment_id is not None
    with env.store.session() as s:
        assert dq.get_deployment(s, refused.deployment_id).state == "cancelled"


async def test_a_refused_flip_rollback_is_not_left_queued(env: Any) -> None:
    await deployer.deploy(env, "v1")
    await deployer.deploy(env, "v2")
    with env.store.session() as s:
        lq.try_acquire(s, "api", "stg", "deploy-other", env.owner, 60)
    with pytest.raises(LeaseHeldError):
        await deployer.rollback(env, wait=False)
    assert _unfinished(env) == []
    [refused] = _events(env, "deploy.refused")
    with env.store.session() as s:
        row = dq.get_deployment(s, refused.deployment_id)
        assert row.kind == "rollback" and row.state == "cancelled"


async def test_a_router_that_cannot_listen_refuses_before_anything_is_in_progress(env: Any) -> None:
    from shipyard.errors import AgentError

    async def ensure() -> None:
        raise AgentError("cannot listen on 127.0.0.1:1: the address is already in use")

    env.router.ensure = ensure
    with pytest.raises(AgentError):
        await deployer.deploy(env, "v1")
    assert _unfinished(env) == []
    [refused] = _events(env, "deploy.refused")
    assert "already in use" in refused.message


# ---- frozen environments -------------------------------------------------------------------------------

def _freeze(e: Any, promotion_id: str = "rollback-20250101-000000-abcd") -> None:
    with e.store.session() as s:
        pq.freeze_env(s, "stg", reason="rolled back to deploy-1", actor="lead", promotion_id=promotion_id)


async def test_a_frozen_env_refuses_deploys_without_recording_a_run(env: Any) -> None:
    _freeze(env)
    with pytest.raises(EnvironmentFrozen, match="stg is frozen by rollback-20250101-000000-abcd") as err:
        await deployer.deploy(env, "v1")
    assert "--override-freeze" in str(err.value)
    with env.store.session() as s:
        assert dq.list_deployments(s) == []
    [refused] = _events(env, "deploy.refused")
    assert "frozen" in refused.message


async def test_frozen_in_the_config_refuses_too(env: Any) -> None:
    env.settings = replace(env.settings, frozen=True)
    with pytest.raises(EnvironmentFrozen, match=r"environments\.stg\.frozen: true"):
        await deployer.deploy(env, "v1")


async def test_a_frozen_env_refuses_rollbacks_flip_and_redeploy(env: Any, repo: Any) -> None:
    await deployer.deploy(env, "v1")
    await deployer.deploy(env, "v2")
    _freeze(env)
    with pytest.raises(EnvironmentFrozen):
        await deployer.rollback(env)                          # the warm v1 set: a flip
    v1 = git(repo, "rev-parse", "v1")
    await env.target.stop([i for i in env.target.running.values() if i.revision == v1], 1)
    with pytest.raises(EnvironmentFrozen):
        await deployer.rollback(env)                          # expired: would redeploy v1
    assert env.router.serving_revisions() == {git(repo, "rev-parse", "v2")}
    assert len(_events(env, "deploy.refused")) == 2


async def test_an_override_lets_one_deploy_through_and_is_recorded(env: Any) -> None:
    _freeze(env)
    outcome = await deployer.deploy(env, "v1", override=FreezeOverride("hotfix for the outage"))
    assert outcome.state is DeployState.SUCCEEDED
    [over] = _events(env, "deploy.freeze_overridden")
    assert over.deployment_id == outcome.deployment_id
    assert over.data["actor"] == "tester" and over.data["reason"] == "hotfix for the outage"
    assert over.data["frozen_by"] == "rollback-20250101-000000-abcd"
    with pytest.raises(EnvironmentFrozen):                    # one request, not a thaw
        await deployer.deploy(env, "v2")


async def test_an_override_scoped_to_one_freeze_does_not_pass_another(env: Any) -> None:
    _freeze(env, "rollback-b")
    scoped = FreezeOverride("deploys the rollback", only_freeze_by="rollback-a")
    with pytest.raises(EnvironmentFrozen):
        await deployer.deploy(env, "v1", override=scoped)
    env.settings = replace(env.settings, frozen=True)
    with pytest.raises(EnvironmentFrozen):
        await deployer.deploy(env, "v1", override=FreezeOverride("x", only_freeze_by="rollback-b"))
    env.settings = replace(env.settings, frozen=False)
    outcome = await deployer.deploy(env, "v1", override=FreezeOverride("x", only_freeze_by="rollback-b"))
    assert outcome.state is DeployState.SUCCEEDED
