"""The (service, env) lease: at most one run deploys a service to an environment at a time.

Safety comes from the database, not from locks in this process, because the contenders are separate
`shipyard` processes (possibly on separate hosts sharing PostgreSQL):

- a free lease is taken by INSERT ... ON CONFLICT DO NOTHING: of several racers exactly one inserts;
- a stale lease (expired, or its owner provably dead) is taken by an UPDATE whose WHERE clause repeats the
  holder and expiry that were read (compare-and-swap): of several racers exactly one matches a row;
- heartbeat and release only touch a row that still names the caller's deployment, so a run that lost its
  lease finds out (heartbeat returns False) instead of extending someone else's.

Call each function in its own short transaction (`with store.session() as s:`) so the outcome is committed
before the caller acts on it. Times come from this host's clock: hosts sharing a PostgreSQL server need
their clocks in sync to well within the TTL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shipyard.store.models import Lease
from shipyard.store.owner import owner_is_dead
from shipyard.store.sql import insert_ignore, rowcount, utcnow


def _ttl(ttl: float | timedelta) -> timedelta:
    return ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)


def try_acquire(
    session: Session,
    service: str,
    env: str,
    deployment_id: str,
    owner: str,
    ttl: float | timedelta,
    *,
    now: datetime | None = None,
) -> Lease | None:
    """Take the lease if it is free, expired or held by a dead owner; None if someone live holds it.

    Asking again for a lease this deployment already holds (same owner) renews it, so a resumed run does
    not lock itself out.
    """
    now = now or utcnow()
    expires = now + _ttl(ttl)
    values = {"service": service, "env": env, "deployment_id": deployment_id, "owner": owner,
              "acquired_at": now, "heartbeat_at": now, "expires_at": expires}
    if insert_ignore(session, Lease, values):
        return get_lease(session, service, env)
    held = get_lease(session, service, env)
    if held is None:
        # Released between our insert and our read: try once more rather than report it as held.
        return get_lease(session, service, env) if insert_ignore(session, Lease, values) else None
    mine = held.deployment_id == deployment_id and held.owner == owner
    if not (mine or held.expires_at <= now or owner_is_dead(held.owner)):
        return None
    changes = values if not mine else {"heartbeat_at": now, "expires_at": expires}
    swapped = session.execute(
        update(Lease)
        .where(Lease.service == service, Lease.env == env, Lease.deployment_id == held.deployment_id,
               Lease.owner == held.owner, Lease.expires_at == held.expires_at)
        .values(**changes)
        .execution_options(synchronize_session=False))
    if rowcount(swapped) != 1:
        return None  # another contender took it first
    return get_lease(session, service, env)


def heartbeat(
    session: Session,
    service: str,
    env: str,
    deployment_id: str,
    ttl: float | timedelta,
    *,
    now: datetime | None = None,
) -> bool:
    """Push the expiry forward; False means the lease was taken over (stop touching the environment)."""
    now = now or utcnow()
    result = session.execute(
        update(Lease)
        .where(Lease.service == service, Lease.env == env, Lease.deployment_id == deployment_id)
        .values(heartbeat_at=now, expires_at=now + _ttl(ttl))
        .execution_options(synchronize_session=False))
    return rowcount(result) == 1


def release(session: Session, service: str, env: str, deployment_id: str) -> bool:
    """Give the lease back; False if it was no longer ours (nothing is deleted then)."""
    result = session.execute(
        delete(Lease)
        .where(Lease.service == service, Lease.env == env, Lease.deployment_id == deployment_id)
        .execution_options(synchronize_session=False))
    return rowcount(result) == 1


def get_lease(session: Session, service: str, env: str) -> Lease | None:
    """The current holder of (service, env), fresh from the database, expired or not."""
    return session.get(Lease, (service, env), populate_existing=True)


def list_leases(session: Session) -> list[Lease]:
    """Every lease row, for status displays (check `expires_at` and `owner_is_dead` to judge staleness)."""
    return list(session.scalars(select(Lease).order_by(Lease.service, Lease.env)
                                .execution_options(populate_existing=True)))


def lease_is_stale(lease: Lease, *, now: datetime | None = None) -> bool:
    """Whether `try_acquire` would take this lease over: expired, or its owner is provably dead."""
    return lease.expires_at <= (now or utcnow()) or owner_is_dead(lease.owner)
