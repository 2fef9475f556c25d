"""RouterServer: the listening socket, the backend set, dispatch/retry, drain, stats, timeouts.

Everything on the request path is synchronous callbacks; the only tasks are new upstream connects
(pooled connections are reused synchronously) and one sweeper that enforces timeouts once per
interval, so no per-request timer handles are created.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from typing import Any

from .backends import Backend, BackendState, Balancer, split_address
from .client import ClientConnection
from .drain import CLOSE_HANDSHAKE, DrainReport, drain_backend
from .exchange import CONN_FAILURE, EMPTY_RESPONSE, RESPONSE_TIMEOUT, Exchange
from .metrics import Counters, aggregate
from .options import RouterOptions
from .upstream import UpstreamConnection

log = logging.getLogger(__name__)

FRESH_GRACE = 1.0  # seconds a retiring router waits for the first request of a connection it just accepted


class RouterServer:
    """One listening port routing to one (service, env)'s weighted backends.

    ``options`` (a RouterOptions, or its fields as keywords) holds the timeouts, the retry policy and
    the trusted proxies; docs/router.md says what each one bounds.
    """

    def __init__(self, name: str, listen: str, options: RouterOptions | None = None, **overrides: Any) -> None:
        self.name = name
        self.listen = listen
        self.host, self.port = split_address(listen)
        self.opts = RouterOptions()
        self._trusted: list[Any] = []
        self.apply_options(options if not overrides else RouterOptions.from_mapping(
            {**(options or RouterOptions()).as_dict(), **overrides}))
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # bound in start()
        self.states: dict[str, BackendState] = {}  # every address ever routed to (current or retired)
        self.current: list[BackendState] = []  # the routing set, in the order given
        self.balancer = Balancer()
        self.counters: dict[tuple[str, str], Counters] = {}
        self.clients: set[ClientConnection] = set()
        self.unrouted = 0
        self.closing = False
        self.keepalive = True  # False once retiring or closing: responses then say Connection: close
        self._server: asyncio.AbstractServer | None = None
        self._fileno: int | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._connects: set[asyncio.Task[None]] = set()

    @classmethod
    def with_options(cls, name: str, listen: str, options: RouterOptions) -> RouterServer:
        return cls(name, listen, options)

    @property
    def options(self) -> RouterOptions:
        return self.opts

    def apply_options(self, options: RouterOptions | None) -> None:
        """Change tunables in place (they are read per request/sweep), keeping connections and counters."""
        self.opts = options or RouterOptions()
        self._trusted = [ipaddress.ip_network(n) for n in self.opts.trusted_proxies]

    def is_trusted(self, host: str) -> bool:
        """Is this peer a proxy whose forwarding headers we extend (trusted_proxies)? Once per connection."""
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._trusted)

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen; an address already in use raises OSError here, not on the first request.

        With `sock`, serve a socket that is already bound and listening (handed over by the keeper, which
        keeps its own copy so connections wait in the backlog while no router runs) instead of binding.
        """
        self.loop = asyncio.get_running_loop()
        self.closing = False
        self.keepalive = True
        if sock is not None:
            self._server = await self.loop.create_server(lambda: ClientConnection(self), sock=sock, backlog=1024)
        else:
            self._server = await self.loop.create_server(
                lambda: ClientConnection(self), self.host, self.port, reuse_address=True, backlog=1024
            )
        bound = self._server.sockets[0]
        self._fileno = int(bound.fileno())
        if self.port == 0 or sock is not None:  # ephemeral port (tests), or a handed-over socket
            self.host, self.port = bound.getsockname()[:2]
            self.listen = f"{self.host}:{self.port}"
        self._sweeper = self.loop.create_task(self._sweep())

    def fileno(self) -> int:
        """The listening socket's fd (shared with the keeper and the generation's other processes)."""
        assert self._fileno is not None, "start() the router first"
        return self._fileno

    def stop_accepting(self) -> None:
        """Close this process's copy of the listening socket; open connections are served on.

        For a handover: another process holding the same socket accepts from now on, and connections
        not yet accepted stay in the shared backlog for it.
        """
        if self._server is not None:
            self._server.close()

    def busy_connections(self) -> int:
        """Client connections with a request or tunnel still under way."""
        return sum(1 for c in self.clients if c.active is not None or c.tunnel is not None or c.queue)

    async def finish(self, timeout: float) -> int:
        """After stop_accepting: let every request and tunnel end (closing connections as they go idle)
        for up to `timeout` seconds, then close what is left; returns how many connections were cut.

        A websocket cannot move to the next router process, so its last second (a quarter of a short
        budget) is the close handshake, as in a drain: a close frame with 1001 (going away) to each
        side, so the client reconnects (to the new process) instead of seeing 1006. A websocket whose
        client got a close frame is not counted as cut.
        """
        start = self.loop.time()
        deadline = start + timeout
        going_away = deadline - min(CLOSE_HANDSHAKE, timeout / 4)
        went_away = False
        self.keepalive = False  # every response from now on ends its connection
        while True:
            now = self.loop.time()
            for client in list(self.clients):
                if client.active is None and client.tunnel is None and not client.queue and client.current is None \
                        and client.rx == client.rx_mark and (client.served or now - client.last_active >= FRESH_GRACE):
                    # Idle keep-alive: the client opens its next one elsewhere. Not one with a request
                    # head on its way, nor one just accepted that has not sent its first request yet:
                    # closing those would fail a request the client is sending right now.
                    client.close_idle()
            if not self.clients or now >= deadline:
                break
            if not went_away and now >= going_away:
                went_away = True
                for client in list(self.clients):
                    if client.tunnel is not None:
                        client.tunnel.go_away()
            await asyncio.sleep(0.02)
        cut = sum(1 for c in self.clients if c.tunnel is None or not c.tunnel.client_got_close)
        await self.close()
        return cut

    async def close(self) -> None:
        """Stop listening, then close every client and backend connection."""
        self.closing = True
        self.keepalive = False
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._connects):
            task.cancel()
        for client in list(self.clients):
            client.closing = True
            client.transport.abort()
        for state in self.states.values():
            state.close_idle()
            for conn in list(state.busy):
                conn.close()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
            self._server = None
        if self._sweeper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    # -- backends ---------------------------------------------------------------------------------
    def set_backends(self, backends: list[Backend]) -> None:
        """Replace the routing set at once; the next request already uses the new weights."""
        seen: set[str] = set()
        new: list[BackendState] = []
        for b in backends:
            if b.weight < 0:
                raise ValueError(f"backend {b.address}: weight must be >= 0, got {b.weight}")
            if b.address in seen:
                raise ValueError(f"backend {b.address} listed twice")
            seen.add(b.address)
            state = self.states.get(b.address)
            if state is None:
                state = self.states[b.address] = BackendState(b, self._counters_for(b))
            else:
                if state.backend.revision != b.revision:
                    state.counters = self._counters_for(b)
                    state.close_idle()  # a new process may sit on a recycled port
                state.backend = b
                state.weight = b.weight
                if b.weight > 0:
                    state.draining = False
                    state.waiter = None
            new.append(state)
        for state in self.current:
            if state.address not in seen:
                state.weight = 0
                state.close_idle()  # nothing will reuse them; drain() still waits for in-flight ones
        self.current = new
        self.balancer.update(new)

    def _counters_for(self, b: Backend) -> Counters:
        key = (b.address, b.revision)
        counters = self.counters.get(key)
        if counters is None:
            counters = self.counters[key] = Counters()
        return counters

    # -- request path -----------------------------------------------------------------------------
    def dispatch(self, ex: Exchange) -> None:
        """Pick a backend for this one request and send it there (pooled connection if any)."""
        state = self.balancer.pick(ex.tried)
        if state is None:
            if ex.attempts == 0:
                self.unrouted += 1
                ex.client.respond_error(ex, 503)
            else:
                ex.client.respond_error(ex, 502)
            return
        ex.attempts += 1
        ex.state = state
        state.in_flight += 1
        # HAProxy's "http-reuse safe": a client's first request, when it cannot be retried, goes on a
        # connection of its own, so a pooled connection the backend just closed cannot fail it.
        if ex.idempotent or not ex.first:
            conn = state.pop_idle()
            if conn is not None:
                conn.attach(ex)
                return
        task = self.loop.create_task(self._connect(state, ex))
        self._connects.add(task)
        task.add_done_callback(self._connects.discard)

    async def _connect(self, state: BackendState, ex: Exchange) -> None:
        try:
            async with asyncio.timeout(self.opts.connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: UpstreamConnection(self, state), state.host, state.port
                )
        except (OSError, TimeoutError):
            if ex.state is state:  # still ours (the client may have gone meanwhile)
                ex.release()
                state.counters.errors += 1
                self.retry_or_fail(ex, state, CONN_FAILURE)
            return
        if ex.done or ex.state is not state or self.closing:
            # The client went away while we connected: keep the fresh connection for the next one.
            if state.draining or self.closing:
                conn.close()
            else:
                conn.idle_since = self.loop.time()
                state.idle.append(conn)
            return
        conn.attach(ex)

    def retry_or_fail(self, ex: Exchange, failed: BackendState, cause: str) -> None:
        """An attempt failed before any response byte reached the client: send it again, or answer.

        Like HAProxy with ``retry-on`` = options.retry_on and ``retries`` = options.retries, except that a
        request that may have reached the backend (every cause but conn-failure) is only sent again when
        its method is idempotent (RFC 9110 9.2.2). A request that cannot be retried after a reused
        connection closed gets no answer but a closed connection, when it was not the client's first on
        it (HAProxy's abort_keep_alive: the client retries as after any keep-alive race); else 502/504.
        """
        if ex.done:  # answered already, or the client is gone: never sent anywhere again
            return
        opts = self.opts
        retry = (
            ex.chunks is not None
            and not ex.responded
            and ex.attempts <= opts.retries
            and cause in opts.retry_on
            and (ex.idempotent or cause == CONN_FAILURE)
        )
        if not retry:
            if cause == EMPTY_RESPONSE and not ex.first:
                failed.counters.errors += 1
                failed.counters.record(502, self.loop.time() - ex.started)
                ex.client.drop(ex)
            else:
                self.fail(ex, failed, 504 if cause == RESPONSE_TIMEOUT else 502)
            return
        failed.counters.retries += 1
        if ex.tried is None:
            ex.tried = set()
        ex.tried.add(failed.address)
        self.dispatch(ex)

    def fail(self, ex: Exchange, state: BackendState, status: int) -> None:
        """Answer a proxy-generated 502/504 and count it against the backend that caused it."""
        state.counters.errors += 1
        state.counters.record(status, self.loop.time() - ex.started)
        ex.client.respond_error(ex, status)

    # -- drain ------------------------------------------------------------------------------------
    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> DrainReport:
        """Wait for a backend that no longer gets requests to finish what it has (see drain.py).

        HTTP requests get ``timeout`` (long ones up to ``ws_timeout`` when that is later); websockets
        get ``ws_timeout``, ending with close frames. The report's ``remaining`` (requests still in
        flight + tunnels cut) is 0 when the backend can stop cleanly.
        """
        state = self.states.get(address)
        if state is None:
            return DrainReport()
        if state in self.current and state.weight > 0:
            raise ValueError(f"drain {address}: set its weight to 0 or remove it from the set first")
        return await drain_backend(state, timeout, timeout if ws_timeout is None else ws_timeout)

    # -- observation ------------------------------------------------------------------------------
    def pair_counters(self) -> list[tuple[tuple[str, str], Counters]]:
        return sorted(self.counters.items())

    def stats(self) -> dict[str, Any]:
        """JSON-able snapshot: the routing set with live gauges, counters per backend and per revision."""

        def row(s: BackendState) -> dict[str, Any]:
            b = s.backend
            return {
                "address": b.address,
                "weight": s.weight,
                "revision": b.revision,
                "instance": b.instance,
                "in_flight": s.in_flight,
                "open_tunnels": len(s.tunnels),
            }

        in_set = {s.address for s in self.current}
        pairs = self.pair_counters()
        return {
            "name": self.name,
            "listen": self.listen,
            "backends": [row(s) for s in self.current],
            "retired": [
                row(s)
                for s in self.states.values()
                if s.address not in in_set and (s.in_flight or s.tunnels)
            ],
            "per_backend": {k: c.as_dict() for k, c in aggregate((a, c) for (a, _), c in pairs).items()},
            "per_revision": {k: c.as_dict() for k, c in aggregate((r, c) for (_, r), c in pairs).items()},
            "unrouted": self.unrouted,
        }

    # -- timeouts ---------------------------------------------------------------------------------
    async def _sweep(self) -> None:
        """Enforce every timeout once per interval, without per-request timers."""
        while True:  # the interval is read each pass: apply_options may change the timeouts
            o = self.opts
            shortest = min(o.response_timeout, o.request_timeout, o.client_timeout, o.keepalive_timeout)
            await asyncio.sleep(max(0.05, min(1.0, shortest / 4)))
            try:
                self._sweep_once(self.loop.time())
            except Exception:  # a bug here must not silently end every timeout of the router
                log.exception("router %s: timeout sweep failed", self.name)

    def _sweep_once(self, now: float) -> None:
        """One pass over busy/idle backend connections and client connections."""
        pool_idle = self.opts.pool_idle_timeout
        for state in list(self.states.values()):
            for conn in list(state.busy):
                conn.sweep(now)
            if state.idle:
                for conn in [c for c in state.idle if now - c.idle_since >= pool_idle]:
                    state.idle.remove(conn)
                    conn.close()
        for client in list(self.clients):
            client.sweep(now)
