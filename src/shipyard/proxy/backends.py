"""Backends, their live state (pool, in-flight count, tunnels) and the per-request balancer.

A ``BackendState`` outlives the backend's membership in the routing set: after ``set_backends`` drops
an address, requests already sent to it still finish there, and ``drain`` waits on exactly this state.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from .metrics import Counters


class Pooled(Protocol):
    """A backend connection as this bookkeeping sees it (``upstream.UpstreamConnection``)."""

    closed: bool
    idle_since: float

    def close(self) -> None: ...

    def attach(self, exchange: Any) -> None:
        """Start answering one request (an ``exchange.Exchange``) on this connection."""

    def sweep(self, now: float) -> None:
        """Enforce this connection's timeouts (called by the router's sweeper)."""


class Tunnelled(Protocol):
    """An upgraded connection as drain sees it (``tunnel.Tunnel``)."""

    @property
    def client_got_close(self) -> bool:
        """A websocket close frame reached the client (from the app or from the router)."""

    def go_away(self) -> None:
        """Close it politely: a websocket gets close frames (1001) at the next frame boundaries."""

    def cut(self) -> None:
        """Close both sides now."""


@dataclass(frozen=True)
class Backend:
    """One routable instance: where it listens, how much traffic it gets, and labels for the stats."""

    address: str  # "127.0.0.1:8123"
    weight: int  # >= 0; 0 = still in the set (kept for stats / draining) but gets no new requests
    revision: str  # git sha
    instance: str  # instance id


def split_address(address: str) -> tuple[str, int]:
    """"host:port" / "[v6]:port" -> (host, port); a clear ValueError beats a late connect failure."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"backend address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


class BackendState:
    """Everything the router tracks about one backend address."""

    __slots__ = (
        "address",
        "backend",
        "busy",
        "counters",
        "current",
        "draining",
        "host",
        "idle",
        "in_flight",
        "port",
        "tunnels",
        "waiter",
        "weight",
    )

    def __init__(self, backend: Backend, counters: Counters) -> None:
        self.backend = backend
        self.address = backend.address
        self.host, self.port = split_address(backend.address)
        self.weight = backend.weight
        self.counters = counters
        self.current = 0  # smooth-weighted-round-robin accumulator
        self.in_flight = 0  # HTTP requests sent here and not yet answered
        self.idle: list[Pooled] = []  # pooled keep-alive connections (LIFO)
        self.busy: set[Pooled] = set()  # connections carrying a request or a tunnel
        self.tunnels: set[Tunnelled] = set()  # upgraded connections (their backend side is in busy)
        self.draining = False  # no pooling: connections are closed as soon as they go idle
        self.waiter: asyncio.Event | None = None  # set while a drain waits for in_flight/tunnels to drop

    def pop_idle(self) -> Pooled | None:
        """Most recently used live pooled connection (the least likely to have been closed by the peer)."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def request_done(self) -> None:
        """One HTTP request left this backend; wake a waiting drain when it was the last."""
        self.in_flight -= 1
        if self.waiter is not None:
            self.waiter.set()

    def tunnel_done(self, tunnel: Tunnelled) -> None:
        self.tunnels.discard(tunnel)
        if self.waiter is not None:
            self.waiter.set()

    def close_idle(self) -> int:
        """Close pooled connections (drain, close, or the backend left the set)."""
        n = 0
        while self.idle:
            conn = self.idle.pop()
            if not conn.closed:
                conn.close()
                n += 1
        return n


class Balancer:
    """Smooth weighted round robin (as in nginx) over the backends with weight > 0.

    Chosen over weighted random because a 1/99 canary gets exactly its share even over few requests,
    which makes small-traffic canary analysis and tests deterministic; the cost is O(n) per pick, and n is
    the number of instances of one service (a handful).
    """

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active: list[BackendState] = []

    def update(self, states: list[BackendState]) -> None:
        for s in states:
            s.current = 0
        self.active = [s for s in states if s.weight > 0]

    def pick(self, exclude: set[str] | None = None) -> BackendState | None:
        """Next backend for one request; ``exclude`` holds addresses that already failed this request."""
        active = self.active
        if len(active) == 1 and not exclude:
            return active[0]
        best: BackendState | None = None
        total = 0
        for s in active:
            if exclude and s.address in exclude:
                continue
            s.current += s.weight
            total += s.weight
            if best is None or s.current > best.current:
                best = s
        if best is None and exclude:
            # Every backend failed once for this request: a second chance beats answering 502 when the
            # failure was a stale pooled connection rather than a dead backend.
            return self.pick(None)
        if best is not None:
            best.current -= total
        return best
