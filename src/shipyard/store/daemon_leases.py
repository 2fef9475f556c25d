"""Daemon leases (see models.DaemonLease): taken free, expired or from a dead owner by insert-if-absent or
compare-and-swap, as the (service, env) leases are (store/leases.py), renewed only by their holder."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from shipyard.store.models import DaemonLease
from shipyard.store.owner import owner_is_dead
from shipyard.store.sql import insert_ignore, rowcount, utcnow


def claim(session: Session, work: str, owner: str, ttl: float, *, now: datetime | None = None) -> bool:
    """Take or renew `work` for `owner`: True if it holds it now (until now + ttl)."""
    now = now or utcnow()
    expires = now + timedelta(seconds=ttl)
    if insert_ignore(session, DaemonLease, {"work": work, "owner": owner, "acquired_at": now, "heartbeat_at": now,
                                            "expires_at": expires}):
        return True
    held = session.get(DaemonLease, work, populate_existing=True)
    if held is None:
        return False                       # released under us: the next round takes it
    mine = held.owner == owner
    if not (mine or held.expires_at <= now or owner_is_dead(held.owner)):
        return False
    changes = {"heartbeat_at": now, "expires_at": expires} if mine else \
        {"owner": owner, "acquired_at": now, "heartbeat_at": now, "expires_at": expires}
    swapped = session.execute(
        update(DaemonLease)
        .where(DaemonLease.work == work, DaemonLease.owner == held.owner, DaemonLease.expires_at == held.expires_at)
        .values(**changes).execution_options(synchronize_session=False))
    return rowcount(swapped) == 1


def release(session: Session, work: str, owner: str) -> None:
    session.execute(delete(DaemonLease).where(DaemonLease.work == work, DaemonLease.owner == owner)
                    .execution_options(synchronize_session=False))


def holders(session: Session) -> list[DaemonLease]:
    return list(session.scalars(select(DaemonLease).order_by(DaemonLease.work)))
