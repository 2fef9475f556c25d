"""Drain: wait for a backend that no longer gets requests to finish what it has, within its budgets.

Two budgets (docs/config.md): ``timeout`` (the strategy's drain_timeout) for HTTP requests, and
``ws_timeout`` (ws_drain_timeout) for websockets and long requests. An HTTP request still running when
``timeout`` is over is a long request and may go on until ``ws_timeout`` when that is later, so HTTP
requests get max(timeout, ws_timeout). Websockets get ``ws_timeout``; its last second (at most a quarter
of it) is their close handshake: each gets a close frame with 1001 (going away) and is closed when the
client answers, or cut when the budget ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backends import BackendState, Tunnelled

CLOSE_HANDSHAKE = 1.0  # seconds at the end of the websocket budget for close frames to be answered


@dataclass(frozen=True)
class DrainReport:
    """What a drain left behind; ``remaining`` 0 means the backend can stop cleanly."""

    http_left: int = 0  # HTTP requests still in flight when their budget ran out
    ws_closed: int = 0  # upgraded connections that ended with a close frame to the client (or by themselves)
    ws_cut: int = 0  # upgraded connections the router cut without the client getting a close frame

    @property
    def remaining(self) -> int:
        return self.http_left + self.ws_cut

    def as_dict(self) -> dict[str, Any]:
        """The agent API's answer: ``remaining`` as before, and the counts behind it."""
        return {"remaining": self.remaining, "http_left": self.http_left, "ws_closed": self.ws_closed,
                "ws_cut": self.ws_cut}


async def drain_backend(state: BackendState, timeout: float, ws_timeout: float) -> DrainReport:
    """Stop pooling for ``state`` and wait for its requests and tunnels (see the module docstring)."""
    loop = asyncio.get_running_loop()
    state.draining = True
    state.close_idle()
    event = state.waiter = state.waiter or asyncio.Event()
    start = loop.time()
    seen: set[Tunnelled] = set(state.tunnels)

    async def wait_until(done: Callable[[], bool], deadline: float) -> bool:
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)
        return True

    def no_tunnels() -> bool:
        seen.update(state.tunnels)  # a request in flight may still become a websocket
        return not state.tunnels

    async def websockets() -> int:
        handshake = min(CLOSE_HANDSHAKE, ws_timeout / 4)
        if not await wait_until(no_tunnels, start + ws_timeout - handshake):
            for tunnel in list(state.tunnels):
                tunnel.go_away()
            await wait_until(no_tunnels, start + ws_timeout)
        cut = 0
        for tunnel in list(state.tunnels):
            if not tunnel.client_got_close:
                cut += 1
            tunnel.cut()
        return cut

    # The event stays on the state afterwards (a concurrent drain may share it); set_backends drops it
    # when the backend is routable again.
    http_ok, cut = await asyncio.gather(
        wait_until(lambda: state.in_flight <= 0, start + max(timeout, ws_timeout)), websockets())
    state.close_idle()
    return DrainReport(http_left=0 if http_ok else state.in_flight, ws_closed=len(seen) - cut, ws_cut=cut)
