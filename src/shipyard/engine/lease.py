"""One run per (service, env): a lease in the store, a FIFO queue for waiters, and a heartbeat while running.

The lease lives in the database, not in this process, so two CLIs on two machines sharing a PostgreSQL
store exclude each other too. A holder that dies stops heart-beating; its lease expires (or is seen dead at
once on the same host) and the next waiter, or `shipyard recover`, takes it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from shipyard.errors import DeploymentCancelled, LeaseHeldError
from shipyard.store import Store
from shipyard.store import leases as lq
from shipyard.store import queue as qq
from shipyard.store.models import Deployment

LEASE_TTL = 15.0
POLL = 0.25


def describe_holder(store: Store, service: str, env: str) -> str:
    with store.session() as s:
        lease = lq.get_lease(s, service, env)
    if lease is None:
        return "nobody"
    age = (datetime.now(UTC) - lease.acquired_at).total_seconds()
    return f"{lease.deployment_id} (owner {lease.owner}, for {age:.0f}s)"


@asynccontextmanager
async def hold_lease(store: Store, service: str, env: str, deployment_id: str, owner: str, *,
                     wait: bool, on_wait: Callable[[int, str], None] | None = None,
                     lost: asyncio.Event | None = None) -> AsyncIterator[None]:
    """Acquire the lease (queueing FIFO behind others when `wait`), keep it alive, release it at the end."""
    await acquire(store, service, env, deployment_id, owner, wait=wait, on_wait=on_wait)
    beat = asyncio.create_task(_heartbeat(store, service, env, deployment_id, lost))
    try:
        yield
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        with store.session() as s:
            lq.release(s, service, env, deployment_id)


@asynccontextmanager
async def held_by_group(store: Store, service: str, env: str, group_id: str, owner: str) -> AsyncIterator[None]:
    """A run inside a release group: the group already holds (and heart-beats) the lease under its own id;
    this only checks that it still does, and neither renews nor releases it (engine.groups does)."""
    with store.session() as s:
        lease = lq.get_lease(s, service, env)
    if lease is None or lease.deployment_id != group_id or lease.owner != owner:
        raise LeaseHeldError(f"{service}/{env}: release group {group_id} does not hold its lease "
                             f"(held by {describe_holder(store, service, env)})")
    yield


async def acquire(store: Store, service: str, env: str, deployment_id: str, owner: str, *, wait: bool,
                  on_wait: Callable[[int, str], None] | None = None) -> None:
    with store.session() as s:
        if lq.try_acquire(s, service, env, deployment_id, owner, LEASE_TTL) is not None:
            _stop_if_cancelled(s, deployment_id)
            return
    if not wait:
        raise LeaseHeldError(f"{service}/{env} is being deployed by {describe_holder(store, service, env)}; "
                             "retry later or drop --no-wait to queue")
    with store.session() as s:
        entry_id = qq.enqueue(s, service, env, deployment_id, owner).id
    last_beat = time.monotonic()
    last_pos: int | None = -1
    try:
        while True:
            with store.session() as s:
                _stop_if_cancelled(s, deployment_id)
                pos = qq.queue_position(s, entry_id)
                if pos is None:            # pruned as stale (this process was stalled): rejoin the line
                    entry_id = qq.enqueue(s, service, env, deployment_id, owner).id
                    pos = qq.queue_position(s, entry_id)
                if pos == 0 and lq.try_acquire(s, service, env, deployment_id, owner, LEASE_TTL) is not None:
                    _stop_if_cancelled(s, deployment_id)
                    return
            if on_wait and pos != last_pos:
                on_wait(pos or 0, describe_holder(store, service, env))
                last_pos = pos
            if time.monotonic() - last_beat > LEASE_TTL / 3:
                with store.session() as s:
                    qq.queue_heartbeat(s, entry_id)
                last_beat = time.monotonic()
            await asyncio.sleep(POLL)
    finally:
        with store.session() as s:
            qq.dequeue(s, entry_id)


def _stop_if_cancelled(s: Session, deployment_id: str) -> None:
    """DeploymentCancelled if the run's record was cancelled while it waited (engine.cancel). Read under
    the row's lock right after taking the lease: raising rolls the lease back with this transaction."""
    row = s.get(Deployment, deployment_id, with_for_update=True, populate_existing=True)
    if row is not None and row.state == "cancelled":
        raise DeploymentCancelled(f"{deployment_id} was {row.reason or 'cancelled'} while it waited: nothing ran")


async def _heartbeat(store: Store, service: str, env: str, deployment_id: str,
                     lost: asyncio.Event | None) -> None:
    while True:
        await asyncio.sleep(LEASE_TTL / 3)
        with store.session() as s:
            ok = lq.heartbeat(s, service, env, deployment_id, LEASE_TTL)
        if not ok and lost is not None:
            lost.set()
            return
