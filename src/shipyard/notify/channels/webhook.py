"""A generic JSON webhook, signed so the receiver can trust it and refuse replays.

With a `secret`, every delivery attempt carries (docs/notifications.md gives the receiver's recipe):

* `X-Shipyard-Timestamp: <unix seconds>`, the time of this attempt, and
  `X-Shipyard-Signature-V1: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>`, the way Stripe and
  Slack sign: the timestamp is inside the signature, so a receiver that refuses timestamps outside a
  tolerance window (5 minutes) refuses a captured request replayed later, and one that remembers the
  `Idempotency-Key` of recent deliveries refuses a replay inside the window too.
* `X-Shipyard-Signature: sha256=<hex HMAC-SHA256(secret, body)>` (GitHub's convention), kept for
  receivers written against earlier versions; it proves the body but not when it was sent.

The idempotency key goes in its own header and in the body; retries of one message carry the same key
and body with a fresh timestamp and signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from shipyard.notify.channels.base import IDEMPOTENCY_HEADER, Delivery, post_json
from shipyard.notify.message import Message

SIGNATURE_HEADER = "X-Shipyard-Signature"
TIMESTAMP_HEADER = "X-Shipyard-Timestamp"
SIGNATURE_V1_HEADER = "X-Shipyard-Signature-V1"
TOLERANCE = 300.0     # seconds: what the docs tell receivers to accept


def sign(secret: str, body: bytes) -> str:
    """The body-only signature (`X-Shipyard-Signature`)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """Check the body-only signature: constant-time comparison."""
    return hmac.compare_digest(sign(secret, body), header)


def sign_v1(secret: str, timestamp: int, body: bytes) -> str:
    """The timestamped signature (`X-Shipyard-Signature-V1`) over f"{timestamp}.{body}"."""
    return "v1=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_v1(secret: str, body: bytes, timestamp: str, signature: str, *, tolerance: float = TOLERANCE,
              now: float | None = None) -> bool:
    """The receiver's check: a timestamp within `tolerance` of now and a signature over it and the body.
    (Deduplicating by Idempotency-Key is the receiver's other half.)"""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign_v1(secret, ts, body), signature)


def body_of(message: Message) -> dict[str, Any]:
    """The JSON object POSTed: `event` (the kind again, for receivers that switch on it) and every field
    of the Message."""
    return {"event": message.kind, **message.to_dict()}


def body_fields() -> list[str]:
    """The body's top-level keys (docs/notifications.md lists each; a meta-test compares)."""
    return sorted(["event", *(f.name for f in fields(Message))])


class WebhookSender:
    pace = 0.0

    def __init__(self, name: str, url: str, *, headers: dict[str, str] | None = None,
                 secret: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.name, self.url, self.headers, self.secret = name, url, dict(headers or {}), secret
        self.clock = clock

    @property
    def destination(self) -> str:
        return self.url

    async def send(self, message: Message) -> Delivery:
        body = json.dumps(body_of(message), sort_keys=True).encode()
        headers = {**self.headers, IDEMPOTENCY_HEADER: message.idempotency_key}
        if self.secret:
            ts = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(ts)
            headers[SIGNATURE_V1_HEADER] = sign_v1(self.secret, ts, body)
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return await post_json(self.name, self.url, body, headers)
