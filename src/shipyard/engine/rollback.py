"""Rolling a run back: traffic back on the revision that served before, the run's instances stopped.

Every step is idempotent (it acts on what the target and router report now), so a rollback interrupted by
a crash is simply redone from the start by `shipyard recover` (`resume`), without entering rolling_back a
second time. Its steps are not planned but recorded as they happen, in words that name the revisions
(`route all traffic to 9f8e7d6c (v1.4)`), never "new" and "old".
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shipyard.domain.deployment import DeployState, StepState
from shipyard.domain.types import Instance
from shipyard.engine.run import Described, Run, one_line
from shipyard.engine.runstate import weights
from shipyard.errors import ShipyardError
from shipyard.targets.base import PlacingTarget, ReleaseTarget, ShippingTarget

RUNNING = ("running", "starting", "backoff")


async def roll_back(run: Run, reason: str, *, resume: bool = False) -> DeployState:
    """Put traffic back on the old revision, stop the run's instances; return the final state."""
    if not resume:
        run.journal.transition(DeployState.ROLLING_BACK, reason)
    run.journal.event("rollback.started", reason, reason=reason)
    if isinstance(run.target, ReleaseTarget):
        return await _roll_back_release(run, reason)
    if isinstance(run.target, PlacingTarget):
        # A rollback goes on without hosts it cannot reach: what it can put back, it puts back.
        run.target.watch(lambda hosts, reachable: True, lambda host, why, carry_on: run.journal.event(
            "host.lost", f"{host} unreachable during the rollback: {why}; rolling back without it", host=host,
            reason=why, carry_on=True))
    if "on_failure" in run.s.hooks:
        await run.safe_hook("on_failure", "rollback", 0)
    gone, back = run.names()
    idx = 1
    olds: list[Instance] = []
    if run.ctx.old and run.ctx.old_revision:
        olds = await _step(run, idx, f"ensure {back} instances run", _ensure_old(run))
        idx += 1
    news = await run.new_instances()
    target = f"route all traffic to {back}" if olds else f"take {gone} out of the router (nothing to go back to)"
    await _step(run, idx, target, run.set_backends(weights([], olds, None)))
    idx += 1
    await _step(run, idx, f"drain {gone} instances", run.drain(run.s.drain_timeout))
    idx += 1
    await _step(run, idx, f"stop {gone} instances", run.target.stop(news, run.s.stop_timeout))
    idx += 1
    if "cleanup" in run.s.hooks:
        await run.safe_hook("cleanup", "rollback", idx)
    final = DeployState.ROLLED_BACK if olds else DeployState.FAILED
    why = reason if olds else f"{reason} (no previous revision to roll back to)"
    run.journal.transition(final, why, finished_at=datetime.now(UTC))
    message = f"{why}; {back} serves again" if olds else why
    run.journal.event("rollback.completed", message, state=str(final),
                      serving=run.ctx.old_revision if olds else None)
    return final


async def _roll_back_release(run: Run, reason: str) -> DeployState:
    """A release target: make the release that was live before live again (its record, no rebuild unless
    the target runs something in its directory). Idempotent like the rest: re-activating is a no-op change."""
    assert isinstance(run.target, ReleaseTarget)
    if "on_failure" in run.s.hooks:
        await run.safe_hook("on_failure", "rollback", 0)
    _, back = run.names()
    previous = run.ctx.previous
    if previous is not None:
        revision = str(previous["revision"])
        if "rollback_needs_release" in run.target.capabilities:
            await _step(run, 1, f"prepare the release of {back}", run.prepare(revision))
        await _step(run, 2, f"make {back} live again", run.activate(revision=revision, record=previous))
    if "cleanup" in run.s.hooks:
        await run.safe_hook("cleanup", "rollback", 3)
    final = DeployState.ROLLED_BACK if previous is not None else DeployState.FAILED
    why = reason if previous is not None else f"{reason} (no previous release to roll back to)"
    run.journal.transition(final, why, finished_at=datetime.now(UTC))
    message = f"{why}; {back} is live again" if previous is not None else why
    run.journal.event("rollback.completed", message, state=str(final),
                      serving=previous.get("revision") if previous is not None else None)
    return final


async def _step(run: Run, idx: int, description: str, work: Any) -> Any:
    step = Described(description)
    run.journal.step_started("rollback", idx, step)
    try:
        result = await work
    except (ShipyardError, OSError) as raised:
        exc = one_line(raised)
        run.journal.step_finished("rollback", idx, StepState.FAILED, error=str(exc))
        if exc is raised:
            raise
        raise exc from raised
    run.journal.step_finished("rollback", idx, StepState.SUCCEEDED)
    return result


async def _ensure_old(run: Run) -> list[Instance]:
    """The old set, running and out of expiry; instances lost meanwhile are started again."""
    assert run.ctx.old_revision is not None
    olds = [i for i in await run.old_instances() if i.state in RUNNING]
    if "keep_warm" in run.target.capabilities:
        await run.target.keep_warm(olds, None)
    # Old instances on a host lost mid-run cannot be brought back there: they are not waited for.
    expected = len(set(run.ctx.old) - getattr(run.target, "lost_ids", set()))
    if "in_place" in run.target.capabilities:
        olds = await _restore_in_place(run, olds)
    missing = expected - len(olds)
    if missing > 0:
        await run.prepare(run.ctx.old_revision)      # a no-op while its release is still on disk
        if isinstance(run.target, ShippingTarget):
            await run.ship(run.release_of(run.ctx.old_revision))
        fresh = await run.start_healthy(run.ctx.old_revision, run.id + "-rollback", missing)
        run.ctx.old = [i.id for i in olds + fresh]
        run.save_context()
        olds += fresh
    return olds


async def _restore_in_place(run: Run, olds: list[Instance]) -> list[Instance]:
    """In place, a host's new instances hold the ports its old ones need: host by host, take the new ones
    out of rotation, drain and stop them, start the old revision there and put it back in, so the hosts not
    being restored keep serving throughout (never two hosts out at once)."""
    assert run.ctx.old_revision is not None
    news = await run.new_instances()
    hosts = list(dict.fromkeys(i.labels.get("host", "") for i in news))
    for host in hosts:
        mine = [i for i in news if i.labels.get("host") == host]
        live = {i.address: i for i in [*news, *olds]}
        serving = [live[a] for a in run.ctx.routed if a in live and live[a] not in mine]
        await run.set_backends(weights([i for i in serving if i in news], [i for i in serving if i in olds], None))
        await run.drain(run.s.drain_timeout)
        await run.target.stop(mine, run.s.stop_timeout)
        news = [i for i in news if i not in mine]
        await run.prepare(run.ctx.old_revision)
        if isinstance(run.target, ShippingTarget):
            await run.ship(run.release_of(run.ctx.old_revision))
        fresh = await run.start_healthy(run.ctx.old_revision, run.id + "-rollback", len(mine))
        olds = olds + fresh
        run.ctx.old = [*run.ctx.old, *(i.id for i in fresh)]
        run.save_context()
        back = [*serving, *fresh]
        await run.set_backends(weights([i for i in back if i in news], [i for i in back if i in olds], None))
    return olds
