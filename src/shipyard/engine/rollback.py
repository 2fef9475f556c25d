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

RUNNING = ("running", "starting", "backoff")


async def roll_back(run: Run, reason: str, *, resume: bool = False) -> DeployState:
    """Put traffic back on the old revision, stop the run's instances; return the final state."""
    if not resume:
        run.journal.transition(DeployState.ROLLING_BACK, reason)
    run.journal.event("rollback.started", reason, reason=reason)
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
    await run.target.keep_warm(olds, None)
    missing = len(run.ctx.old) - len(olds)
    if missing > 0:
        await run.prepare(run.ctx.old_revision)      # a no-op while its release is still on disk
        fresh = await run.start_healthy(run.ctx.old_revision, run.id + "-rollback", missing)
        run.ctx.old = [i.id for i in olds + fresh]
        run.save_context()
        olds += fresh
    return olds
