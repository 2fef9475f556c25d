"""Signed approve/reject links for `approval.requested` messages (Slack, email, webhook).

A link is `<base>/approve/<token>`, the token `<payload>.<mac>` in URL-safe base64: the payload names the
deployment, the one person the link acts for, a random nonce and the expiry; the mac is HMAC-SHA256 of
the payload under the project's `approval_links.secret`. Whoever holds a link can decide as that person
until it expires, once: the nonce is stored with the decision it made (store.approvals), and a second use
is refused. Opening a link (GET) only shows a confirm page; the decision is its POST form, which carries a
second MAC over the nonce (the form token), so a page elsewhere cannot post a decision without the link.

Links are minted when a message is sent (the delivery worker), never stored in events or the outbox.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shipyard.errors import ApprovalRefused
from shipyard.notify.message import Message

KIND = "approval.requested"
MAX_TOKEN = 1024
_LINK, _FORM = b"shipyard approval link v1\n", b"shipyard approval form v1\n"


@dataclass(frozen=True)
class Claims:
    deployment_id: str
    approver: str
    nonce: str
    expires: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: bytes, data: str) -> str:
    return _b64(hmac.new(secret.encode(), purpose + data.encode(), hashlib.sha256).digest())


def mint(secret: str, deployment_id: str, approver: str, expires: datetime, *, nonce: str | None = None) -> str:
    """A token acting for `approver` on `deployment_id` until `expires`."""
    payload = _b64(json.dumps({"d": deployment_id, "a": approver, "n": nonce or secrets.token_hex(16),
                               "e": int(expires.timestamp())}, separators=(",", ":")).encode())
    return f"{payload}.{_mac(secret, _LINK, payload)}"


def verify(secret: str, token: str, now: datetime | None = None) -> Claims:
    """The claims of a genuine, unexpired token; ApprovalRefused (one line, saying which) otherwise."""
    payload, dot, mac = token.partition(".")
    if len(token) > MAX_TOKEN or not dot or not hmac.compare_digest(mac, _mac(secret, _LINK, payload)):
        raise ApprovalRefused("this approval link is not valid (forged, damaged or signed with another secret)")
    try:
        data = json.loads(_unb64(payload))
        claims = Claims(str(data["d"]), str(data["a"]), str(data["n"]), datetime.fromtimestamp(int(data["e"]), UTC))
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApprovalRefused("this approval link is not valid (its content is unreadable)") from None
    if (now or datetime.now(UTC)) >= claims.expires:
        raise ApprovalRefused(f"this approval link expired at {claims.expires:%Y-%m-%d %H:%M} UTC")
    return claims


def form_token(secret: str, claims: Claims) -> str:
    """What the confirm page's form must send back (CSRF: only a holder of the link saw it)."""
    return _mac(secret, _FORM, claims.nonce)


def check_form_token(secret: str, claims: Claims, sent: str) -> None:
    if not hmac.compare_digest(sent.encode(), form_token(secret, claims).encode()):
        raise ApprovalRefused("the form is not from this approval link's page: open the link again")


def decorator(secret: str, base_url: str, lifetime: float) -> Callable[[Message], Message]:
    """The delivery worker's hook: an `approval.requested` message gets one link per person who may
    approve (not the requester, unless self-approval is allowed). Anyone-may-approve gates get none: a
    link must name the person it acts for."""
    base = base_url.rstrip("/")

    def decorate(message: Message) -> Message:
        data = message.data
        people = data.get("approvers")
        if message.kind != KIND or not message.deployment_id or not isinstance(people, list):
            return message
        expires = datetime.now(UTC) + timedelta(seconds=lifetime)
        with_deadline = data.get("expires_at")
        if isinstance(with_deadline, str):
            with contextlib.suppress(ValueError):
                expires = min(expires, datetime.fromisoformat(with_deadline))
        links = [(f"Review as {p}", f"{base}/approve/{mint(secret, message.deployment_id, str(p), expires)}")
                 for p in people if data.get("self_approval") or p != data.get("requested_by")]
        return dataclasses.replace(message, links=links)

    return decorate
