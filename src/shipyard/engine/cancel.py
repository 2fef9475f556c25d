"""Cancel a deployment that waits in the queue for its (service, env) lease.

Only a queued run can be cancelled: it has touched nothing yet. The record closes as cancelled (who and why
in its reason and in a `deploy.cancelled` event), its queue entry goes, and the waiting run, in whichever
process it waits (a CLI, `shipyard serve`), sees the closed record at its next poll and ends without
acting (engine.lease.acquire). A running deploy is undone by a rollback, never cancelled halfway.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete

from shipyard.domain.deployment import DeployState
from shipyard.errors import NotCancellable, NotFoundError
from shipyard.notify.outbox import record_event
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store import leases as lq
from shipyard.store.models import Deployment, QueueEntry


def cancel_queued(store: Store, deployment_id: str, *, actor: str, reason: str = "",
                  notifications: Any = None) -> dict[str, Any]:
    """Close the queued deployment as cancelled by `actor`; NotFoundError or NotCancellable otherwise.

    The row is locked while it is checked and closed, and a waiter that takes the lease re-reads it under
    the same lock, so a run is either cancelled before it starts or refused the cancel as running."""
    with store.session() as s:
        row = s.get(Deployment, deployment_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise NotFoundError(f"no deployment {deployment_id!r}")
        state = DeployState(row.state)
        if state.terminal:
            raise NotCancellable(f"{deployment_id} already finished ({state}): nothing to cancel")
        lease = lq.get_lease(s, row.service, row.env)
        if state is not DeployState.QUEUED or (lease is not None and lease.deployment_id == deployment_id):
            now = "running (it holds the lease)" if state is DeployState.QUEUED else str(state).replace("_", " ")
            raise NotCancellable(f"{deployment_id} is {now}: only a queued deployment can be cancelled; undo a "
                                 f"running one with `shipyard rollback {row.service} --env {row.env}`")
        why = f"cancelled by {actor}" + (f": {reason.strip()}" if reason.strip() else "")
        dq.update_deployment(s, deployment_id, state=DeployState.CANCELLED, reason=why)
        s.execute(delete(QueueEntry).where(QueueEntry.deployment_id == deployment_id)
                  .execution_options(synchronize_session=False))
        record_event(s, notifications, "deploy.cancelled", service=row.service, env=row.env, message=why,
                     deployment_id=deployment_id, data={"actor": actor, "reason": reason.strip()})
        return {"id": row.id, "service": row.service, "env": row.env, "state": row.state, "reason": row.reason,
                "actor": actor}
