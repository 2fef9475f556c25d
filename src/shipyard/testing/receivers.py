"""Real local receivers for notification tests and benchmarks: an HTTP server and an SMTP server.

DESIGN principle 1 (real parts): channels are tested against sockets, not mocks. The HTTP receiver records
every request, can answer 500 or 429 (with Retry-After) or be down (its port closed), and counts
duplicates by idempotency key the way a well-behaved receiver would dedupe. Given a `signing_secret`, it
checks each request the way docs/notifications.md tells webhook receivers to (written out here, not
imported from shipyard, so the recipe itself is what gets tested): 401 for a missing or wrong signature
or a timestamp outside the tolerance, and a repeated Idempotency-Key is acknowledged but not accepted.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shipyard.ipc import free_port


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """`mode` is "ok", "500" or "429"; `stop()`/`start()` make it down/up on the same port."""

    port: int = field(default_factory=free_port)
    mode: str = "ok"
    retry_after: float = 1.0
    delay: float = 0.0                                 # seconds before answering (a slow receiver)
    requests: list[Received] = field(default_factory=list)
    signing_secret: str | None = None
    tolerance: float = 300.0
    clock: Callable[[], float] = time.time            # the receiver's idea of now (tests move it)
    accepted: list[Received] = field(default_factory=list)
    refused: list[tuple[Received, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def check(self, got: Received) -> str | None:
        """The receiver's recipe; the reason a request is refused, or None."""
        assert self.signing_secret is not None
        timestamp = got.headers.get("X-Shipyard-Timestamp", "")
        signature = got.headers.get("X-Shipyard-Signature-V1", "")
        if not timestamp.isdigit() or not signature:
            return "unsigned"
        if abs(self.clock() - int(timestamp)) > self.tolerance:
            return "stale timestamp"
        expected = "v1=" + hmac.new(self.signing_secret.encode(), timestamp.encode() + b"." + got.body,
                                    hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(expected, signature) else "bad signature"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        got = Received(time.monotonic(), request.path, dict(request.headers), body)
        self.requests.append(got)
        while time.monotonic() - got.at < self.delay:      # re-read: a test may shorten it meanwhile
            await asyncio.sleep(0.02)
        if self.signing_secret is not None:
            why = self.check(got)
            if why is not None:
                self.refused.append((got, why))
                return web.Response(status=401, text=why)
            key = got.headers.get("Idempotency-Key", "")
            if any(a.headers.get("Idempotency-Key", "") == key for a in self.accepted):
                return web.Response(text="duplicate")      # already handled: acknowledge, do nothing
            self.accepted.append(got)
        if self.mode == "500":
            return web.Response(status=500, text="receiver told to fail")
        if self.mode == "429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": f"{self.retry_after:g}"})
        if self.mode == "400":
            return web.Response(status=400, text="invalid_payload")
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> HttpReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def keys(self) -> list[str]:
        return [r.headers.get("Idempotency-Key", "") for r in self.requests]

    def duplicates(self, keys: list[str] | None = None) -> int:
        """Deliveries beyond the first per idempotency key (what a deduping receiver would drop)."""
        counts = Counter(keys if keys is not None else self.keys())
        return sum(n - 1 for n in counts.values() if n > 1)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.requests


class _SmtpHandler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd calls it by this name
        mail = {"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                "data": envelope.content.decode("utf-8", "replace")}
        self.receiver.attempts.append(mail)
        if len(self.receiver.attempts) <= self.receiver.fail_first:
            return "451 4.3.0 try again later"
        self.receiver.messages.append(mail)
        return "250 Message accepted for delivery"


@dataclass
class SmtpReceiver:
    """An aiosmtpd server on 127.0.0.1 (no TLS) that keeps every message it accepts; the first
    `fail_first` deliveries get a temporary failure (451), as a busy relay answers."""

    port: int = field(default_factory=free_port)
    fail_first: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    _controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        self._controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadedHttpReceiver:
    """An HttpReceiver on its own event loop thread, for synchronous callers (CLI subprocess tests, benches)."""

    def __init__(self, **options: Any) -> None:
        self.rx = HttpReceiver(**options)
        self._loop = asyncio.new_event_loop()
        import threading

        self._thread = threading.Thread(target=self._loop.run_forever, name="receiver", daemon=True)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def __enter__(self) -> HttpReceiver:
        self._thread.start()
        self.call(self.rx.start())
        return self.rx

    def __exit__(self, *exc: object) -> None:
        self.call(self.rx.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
