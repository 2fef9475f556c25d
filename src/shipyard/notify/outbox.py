"""Turn a just-appended event into outbox rows, inside the caller's transaction.

Called by the Journal with the session that added the event, so the event and its notifications commit
(or vanish) together: a crash can never leave an event nobody was told about.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from shipyard.config.alerting import Notifications
from shipyard.notify.message import Message, severity_of
from shipyard.notify.routing import channels_for
from shipyard.store import outbox as ob
from shipyard.store.models import Deployment, Event


def idempotency_key(event_id: int | None, channel: str, salt: str = "") -> str:
    """Stable per (event, channel): the receiver's dedupe key when a delivery is retried."""
    raw = f"{event_id}:{channel}:{salt}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


def message_for(event: Event, notifications: Notifications | None = None,
                session: Session | None = None) -> Message:
    """The message for one event, with what people asked to see filled in from its deployment row
    (revision, actor, strategy, duration) when the event itself does not carry them."""
    data = dict(event.data or {})
    dep = session.get(Deployment, event.deployment_id) if session is not None and event.deployment_id else None
    if dep is not None:
        data.setdefault("revision", dep.revision)
        data.setdefault("actor", dep.actor)
        data.setdefault("strategy", dep.strategy)
        if dep.started_at and event.at and "duration" not in data:
            data["duration"] = round(((dep.finished_at or event.at) - dep.started_at).total_seconds(), 1)
    template = notifications.revision_url if notifications else None
    if template and data.get("revision"):
        data.setdefault("revision_url", template.format(service=event.service, env=event.env,
                                                        revision=data["revision"]))
    return Message(kind=event.kind, service=event.service, env=event.env, text=event.message,
                   severity=severity_of(event.kind), deployment_id=event.deployment_id, event_id=event.id,
                   at=event.at.isoformat() if event.at else None, data=data,
                   dashboard_url=notifications.dashboard_url if notifications else None)


def enqueue_for_event(session: Session, event: Event, notifications: Notifications | None) -> int:
    """Add one pending row per routed channel; returns how many (0 when no route matches)."""
    if notifications is None or not notifications.routes:
        return 0
    message = message_for(event, notifications, session)
    count = 0
    for channel in channels_for(notifications, message):
        key = idempotency_key(event.id, channel)
        payload = {**message.to_dict(), "idempotency_key": key}
        ob.enqueue(session, event_id=event.id, channel=channel, idempotency_key=key, payload=payload)
        count += 1
    return count


def record_event(session: Session, notifications: Notifications | None, kind: str, *, service: str, env: str,
                 message: str = "", deployment_id: str | None = None,
                 data: dict[str, object] | None = None) -> Event:
    """Append an event and its outbox rows in `session`'s transaction: for events raised outside a
    deployment's Journal (promotion.completed, approval.requested), so they reach people the same way."""
    from shipyard.store.events import add_event

    row = add_event(session, kind, service=service, env=env, message=message, deployment_id=deployment_id,
                    data=data)
    enqueue_for_event(session, row, notifications)
    return row
