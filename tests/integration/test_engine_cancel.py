"""engine.cancel on SQLite and PostgreSQL: a queued waiter whose row is cancelled ends without the lease;
a run that holds the lease, a finished one and an unknown id are refused; a cancelled run that finds the
lease free does not keep it."""

from __future__ import annotations

import asyncio

import pytest

from shipyard.engine.cancel import cancel_queued
from shipyard.engine.lease import acquire
from shipyard.errors import DeploymentCancelled, NotCancellable, NotFoundError
from shipyard.store import Store, create_deployment
from shipyard.store import leases as lq
from shipyard.store import queue as qq
from shipyard.store.owner import current_owner


def _rows(store: Store, *ids: str) -> None:
    with store.session() as s:
        for dep_id in ids:
            create_deployment(s, service="api", env="prod", revision="a" * 40, strategy="rolling", actor="ci",
                              deployment_id=dep_id)


def _queued(store: Store) -> list[str]:
    with store.session(readonly=True) as s:
        return [q.deployment_id for q in qq.list_queue(s, "api", "prod")]


def _holder(store: Store) -> str | None:
    with store.session(readonly=True) as s:
        lease = lq.get_lease(s, "api", "prod")
        return lease.deployment_id if lease else None


def test_cancel_ends_a_waiter_and_refuses_the_rest(store: Store) -> None:
    _rows(store, "first", "second", "third")
    me = current_owner()

    async def go() -> None:
        await acquire(store, "api", "prod", "first", me, wait=False)
        waiter = asyncio.create_task(acquire(store, "api", "prod", "second", me, wait=True))
        deadline = asyncio.get_running_loop().time() + 20
        while _queued(store) != ["second"]:
            assert asyncio.get_running_loop().time() < deadline, "the waiter never queued"
            await asyncio.sleep(0.05)
        with pytest.raises(NotCancellable, match="rollback"):
            cancel_queued(store, "first", actor="ops")            # holds the lease: running
        done = cancel_queued(store, "second", actor="ci-bot", reason="superseded")
        assert (done["state"], done["reason"]) == ("cancelled", "cancelled by ci-bot: superseded")
        with pytest.raises(DeploymentCancelled, match="cancelled by ci-bot"):
            await asyncio.wait_for(waiter, 20)

    asyncio.run(go())
    assert _holder(store) == "first" and _queued(store) == []
    with pytest.raises(NotCancellable, match="already finished"):
        cancel_queued(store, "second", actor="ops")
    with pytest.raises(NotFoundError):
        cancel_queued(store, "nope", actor="ops")
    # Cancelled before it ever asked, and the lease free: taking it is rolled back with the refusal.
    with store.session() as s:
        lq.release(s, "api", "prod", "first")
    cancel_queued(store, "third", actor="ops")
    with pytest.raises(DeploymentCancelled):
        asyncio.run(acquire(store, "api", "prod", "third", me, wait=True))
    assert _holder(store) is None
