"""A generic JSON webhook, signed so the receiver can trust it: HMAC-SHA256 of the exact body bytes.

The signature header is `X-Shipyard-Signature: sha256=<hex>` (GitHub's convention, which most receivers
already know how to check); the idempotency key goes in its own header and in the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from shipyard.notify.channels.base import IDEMPOTENCY_HEADER, Delivery, post_json
from shipyard.notify.message import Message

SIGNATURE_HEADER = "X-Shipyard-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (and what the tests check): constant-time comparison."""
    return hmac.compare_digest(sign(secret, body), header)


class WebhookSender:
    pace = 0.0

    def __init__(self, name: str, url: str, *, headers: dict[str, str] | None = None,
                 secret: str | None = None) -> None:
        self.name, self.url, self.headers, self.secret = name, url, dict(headers or {}), secret

    @property
    def destination(self) -> str:
        return self.url

    async def send(self, message: Message) -> Delivery:
        body = json.dumps({"event": message.kind, **message.to_dict()}, sort_keys=True).encode()
        headers = {**self.headers, IDEMPOTENCY_HEADER: message.idempotency_key}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        return await post_json(self.name, self.url, body, headers)
