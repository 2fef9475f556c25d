"""The routers of one router process, one RouterServer per (service, env), and the table they serve.

Every change is written to the routing table (table.py) before it is applied and acknowledged: the
table is what the next router generation serves, so an answer the caller got is never lost with this
process. Listening sockets come from a ListenerSource (the keeper in production), never bound here:
the keeper keeps a copy of each, which is what lets connections wait instead of being refused while
no router process runs.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from .backends import Backend, split_address
from .drain import DrainReport
from .errors import RouterConflict, RouterNotFound, RouterRequestError
from .observe import Merged
from .options import RouterOptions
from .server import RouterServer
from .table import RouteRecord, load_table, save_table

log = logging.getLogger(__name__)

Key = tuple[str, str]


class Peers(Protocol):
    """The other processes serving this registry's routers (workerpool.WorkerPool): each change is
    applied there before it is acknowledged, and their numbers and drains count with ours."""

    async def route(self, record: RouteRecord, fd: int) -> None: ...

    async def unroute(self, key: Key) -> None: ...

    async def observe(self, keys: list[Key]) -> list[dict[str, Any]]: ...

    async def drain(self, key: Key, address: str, timeout: float, ws_timeout: float | None) -> DrainReport: ...


class NoPeers:
    """A router process serving alone."""

    async def route(self, record: RouteRecord, fd: int) -> None:
        return None

    async def unroute(self, key: Key) -> None:
        return None

    async def observe(self, keys: list[Key]) -> list[dict[str, Any]]:
        return []

    async def drain(self, key: Key, address: str, timeout: float, ws_timeout: float | None) -> DrainReport:
        return DrainReport()


class ListenerSource(Protocol):
    async def acquire(self, listen: str) -> socket.socket:
        """A listening socket for `listen` (the one already held for it, or a new one); OSError if not."""
        ...

    async def release(self, listen: str) -> None:
        """The socket for `listen` is no longer routed: close it everywhere."""
        ...


def parse_backends(raw: Any) -> list[Backend]:
    """Validate backends from JSON here, so a bad one is a 400 naming the field, not a 500."""
    if not isinstance(raw, list):
        raise RouterRequestError("backends must be a list of {address, weight, revision, instance}")
    out, seen = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("address"), str):
            raise RouterRequestError(f"backends[{i}]: address (host:port) is required")
        try:
            split_address(item["address"])
        except ValueError as exc:
            raise RouterRequestError(f"backends[{i}]: {exc}") from None
        if item["address"] in seen:
            raise RouterRequestError(f"backend {item['address']} listed twice")
        seen.add(item["address"])
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise RouterRequestError(f"backends[{i}]: weight must be an integer >= 0")
        out.append(Backend(address=item["address"], weight=weight, revision=str(item.get("revision", "")),
                           instance=str(item.get("instance", ""))))
    return out


def _as_dict(b: Backend) -> dict[str, Any]:
    return {"address": b.address, "weight": b.weight, "revision": b.revision, "instance": b.instance}


def _options(raw: Any) -> RouterOptions:
    try:
        return RouterOptions.from_mapping(raw)
    except ValueError as exc:
        raise RouterRequestError(f"options: {exc}") from exc


class RouterRegistry:
    """Creates, updates and closes routers; the table file is written before each change is applied."""

    def __init__(self, table: Path, listeners: ListenerSource, *,
                 predecessor_alive: Callable[[], bool] = lambda: False, legacy: Path | None = None) -> None:
        self.table = table
        self.legacy = legacy
        self.listeners = listeners
        self.predecessor_alive = predecessor_alive
        self.peers: Peers = NoPeers()
        self._servers: dict[Key, RouterServer] = {}
        self._routes: dict[Key, RouteRecord] = {}
        self._lock = asyncio.Lock()      # one change at a time: each writes the whole table

    def servers(self) -> list[RouterServer]:
        return list(self._servers.values())

    def records(self) -> list[dict[str, Any]]:
        return [r.public() for r in self._routes.values()]

    def describe(self, service: str, env: str) -> dict[str, Any]:
        self._get((service, env))
        return self._routes[(service, env)].public()

    def _get(self, key: Key) -> RouterServer:
        try:
            return self._servers[key]
        except KeyError:
            raise RouterNotFound(f"no router for {key[0]}/{key[1]}") from None

    def _commit(self, routes: dict[Key, RouteRecord]) -> None:
        """Persist `routes` as the table; only then may the caller apply and acknowledge the change."""
        try:
            save_table(self.table, list(routes.values()))
        except OSError as exc:
            raise RouterRequestError(f"cannot write the routing table {self.table}: {exc}", 500) from exc
        self._routes = routes

    # ---- changes ---------------------------------------------------------------------------------
    async def ensure(self, service: str, env: str, listen: str, options: Any = None) -> dict[str, Any]:
        """Start a router on `listen`; the same listen again only applies `options`, a new one moves it.

        When moving, the new socket is acquired first, so a failed move leaves the old router serving.
        """
        opts = _options(options)
        key = (service, env)
        async with self._lock:
            current, rec = self._servers.get(key), self._routes.get(key)
            if current is not None and rec is not None and listen in (rec.listen, rec.requested):
                if current.options != opts:
                    self._commit({**self._routes, key: replace(rec, options=opts.as_dict())})
                    current.apply_options(opts)
                    await self._to_peers(key)
                return self.describe(service, env)
            backends = rec.backends if rec is not None else []
            server = await self._start(service, env, listen, opts, parse_backends(backends))
            new = RouteRecord(service=service, env=env, listen=server.listen, backends=list(backends),
                              options=opts.as_dict(), requested=listen)
            try:
                self._commit({**self._routes, key: new})
            except RouterRequestError:
                await server.close()
                await self.listeners.release(server.listen)
                raise
            self._servers[key] = server
            if current is not None:
                await self._retire(current, server.listen)
            await self._to_peers(key)
            return self.describe(service, env)

    async def _start(self, service: str, env: str, listen: str, options: RouterOptions,
                     backends: list[Backend]) -> RouterServer:
        try:
            server = RouterServer.with_options(f"{service}/{env}", listen, options)
        except ValueError as exc:
            raise RouterRequestError(f"listen: {exc}") from exc
        try:
            sock = await self.listeners.acquire(listen)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise RouterConflict(
                    f"cannot listen on {listen} for {service}/{env}: the address is already in use "
                    "(another process or router holds it; pick another listen address)") from exc
            raise RouterConflict(f"cannot listen on {listen} for {service}/{env}: {exc}") from exc
        server.set_backends(backends)
        await server.start(sock)
        log.info("router %s/%s listening on %s", service, env, server.listen)
        return server

    async def _retire(self, server: RouterServer, keep: str | None = None) -> None:
        await server.close()
        if server.listen != keep:
            await self.listeners.release(server.listen)

    async def set_backends(self, service: str, env: str, raw: Any) -> dict[str, Any]:
        key = (service, env)
        backends = parse_backends(raw)
        async with self._lock:
            server = self._get(key)
            self._commit({**self._routes, key: replace(self._routes[key], backends=[_as_dict(b) for b in backends])})
            server.set_backends(backends)      # cannot fail: parse_backends checked what it would refuse
            await self._to_peers(key)
            return self.describe(*key)

    async def _to_peers(self, key: Key) -> None:
        """The committed route of `key`, applied by the other processes before the change is answered."""
        await self.peers.route(self._routes[key], self._servers[key].fileno())

    def snapshot(self) -> list[tuple[RouteRecord, int]]:
        """Every route with its listening socket: what a worker that just started must serve."""
        return [(rec, self._servers[key].fileno()) for key, rec in self._routes.items()
                if key in self._servers and self._servers[key].listen == rec.listen]

    async def drain(self, service: str, env: str, address: str, timeout: float,
                    ws_timeout: float | None = None) -> dict[str, int]:
        """Wait for `address` to finish here, and for a previous generation still finishing its own
        requests (a handover): its connections may still be on that backend. Returns the DrainReport
        as a dict ("remaining" = requests still in flight + websockets cut)."""
        server = self._get((service, env))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(timeout, ws_timeout or 0.0)
        try:
            report, theirs = await asyncio.gather(server.drain(address, timeout, ws_timeout=ws_timeout),
                                                  self.peers.drain((service, env), address, timeout, ws_timeout))
        except ValueError as exc:     # still routed to: draining it would never finish
            raise RouterConflict(str(exc)) from exc
        report = DrainReport(http_left=report.http_left + theirs.http_left,
                             ws_closed=report.ws_closed + theirs.ws_closed, ws_cut=report.ws_cut + theirs.ws_cut)
        while self.predecessor_alive() and loop.time() < deadline:
            await asyncio.sleep(0.05)
        return report.as_dict()

    async def stats(self, service: str, env: str) -> dict[str, Any]:
        """The router's stats summed over every process serving it."""
        self._get((service, env))
        return (await self.observed([(service, env)]))[0].stats()

    async def observed(self, keys: list[Key] | None = None) -> list[Merged]:
        """Routers (all, or those of `keys`) with the numbers of every process serving them."""
        keys = [k for k in (keys if keys is not None else list(self._servers)) if k in self._servers]
        theirs = await self.peers.observe(keys)
        return [Merged(self._servers[k], [o[f"{k[0]}/{k[1]}"] for o in theirs if f"{k[0]}/{k[1]}" in o])
                for k in keys]

    async def delete(self, service: str, env: str) -> None:
        key = (service, env)
        async with self._lock:
            server = self._get(key)
            self._commit({k: v for k, v in self._routes.items() if k != key})
            del self._servers[key]
            await self._retire(server)
            await self.peers.unroute(key)

    async def clear(self) -> None:
        """Forget every router (a full stop of the host: the instances they routed to are gone)."""
        async with self._lock:
            self._commit({})
            servers, self._servers = dict(self._servers), {}
            for key, server in servers.items():
                await self._retire(server)
                await self.peers.unroute(key)

    # ---- generations -----------------------------------------------------------------------------
    async def load(self) -> None:
        """Serve the committed table. A router whose socket cannot be had is logged and left out of
        this process (its record stays, so the next deploy's ensure reports the conflict)."""
        records = load_table(self.table, self.legacy)
        for rec in records:
            try:
                server = await self._start(rec.service, rec.env, rec.listen, _options(rec.options),
                                           parse_backends(rec.backends))
            except (RouterRequestError, ValueError) as exc:
                log.error("router %s/%s not restored: %s", rec.service, rec.env, exc)
                continue
            self._servers[rec.key] = server
        self._routes = {r.key: r for r in records if r.key in self._servers}
        if self.legacy is not None and not self.table.exists():
            self._commit(dict(self._routes))

    async def quiesce(self) -> None:
        """Return once no change is under way (the caller has stopped new ones from arriving)."""
        async with self._lock:
            pass

    def listens(self) -> list[str]:
        return [s.listen for s in self._servers.values()]

    def stop_accepting(self) -> None:
        for server in self._servers.values():
            server.stop_accepting()

    async def finish(self, timeout: float) -> int:
        """Let in-flight requests and tunnels end (bounded), then close; returns connections cut."""
        cuts = await asyncio.gather(*(s.finish(timeout) for s in self._servers.values()))
        return sum(cuts)

    async def close_all(self) -> None:
        for server in list(self._servers.values()):
            await server.close()
