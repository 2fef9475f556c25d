"""What every channel is: `send(message) -> Delivery`, raising NotifyError with a retry hint on failure.

HTTP channels share `post_json`, which turns status codes into the worker's retry policy in one place:
2xx delivered, 429 retry after the server's Retry-After, other 4xx never retried (the request itself is
wrong and will stay wrong), 5xx and connection errors retried with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from shipyard.errors import NotifyError
from shipyard.notify.message import Message

IDEMPOTENCY_HEADER = "Idempotency-Key"
TIMEOUT = 10.0


@dataclass(frozen=True)
class Delivery:
    channel: str
    status: int | None = None
    detail: str = ""


class Channel(Protocol):
    name: str
    pace: float  # minimum seconds between two messages to the same destination (Slack: 1 per second)

    @property
    def destination(self) -> str:
        """What pacing is keyed on (a webhook URL, an SMTP server)."""
        ...

    async def send(self, message: Message) -> Delivery:
        """Deliver once; raise NotifyError (retryable or not) when it did not arrive."""
        ...


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


async def post_json(channel: str, url: str, body: bytes, headers: dict[str, str],
                    client: httpx.AsyncClient | None = None) -> Delivery:
    """POST and classify the answer (see the module docstring)."""
    hdrs = {"Content-Type": "application/json", **headers}
    try:
        if client is None:
            async with httpx.AsyncClient(timeout=TIMEOUT) as c:
                resp = await c.post(url, content=body, headers=hdrs)
        else:
            resp = await client.post(url, content=body, headers=hdrs)
    except httpx.HTTPError as exc:
        raise NotifyError(f"{channel}: {type(exc).__name__}: {exc}".rstrip(": "), retryable=True) from exc
    if 200 <= resp.status_code < 300:
        return Delivery(channel, resp.status_code)
    snippet = resp.text[:200]
    if resp.status_code == 429:
        raise NotifyError(f"{channel}: HTTP 429 {snippet}", retryable=True,
                          retry_after=retry_after(resp.headers.get("Retry-After")))
    raise NotifyError(f"{channel}: HTTP {resp.status_code} {snippet}".strip(),
                      retryable=resp.status_code >= 500 or resp.status_code == 408)


def clip(text: str, limit: int) -> str:
    """Cut to a service's limit, marking the cut, so a long reason never gets the message refused."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def details(message: Message) -> list[tuple[str, Any]]:
    """The fields people asked for, in their order, where the event has them."""
    d = message.data
    rows: list[tuple[str, Any]] = [("Environment", message.env), ("Service", message.service)]
    for label, key in (("Revision", "revision"), ("Actor", "actor"), ("Duration", "duration"),
                       ("Reason", "reason"), ("Alarm", "alarm"), ("State", "state")):
        if d.get(key) not in (None, ""):
            value = d[key]
            if key == "duration" and isinstance(value, int | float):
                value = f"{value:.1f}s"
            rows.append((label, value))
    if message.deployment_id:
        rows.append(("Deployment", message.deployment_id))
    return rows
