"""The agent's built-in routers, one per (service, env), kept in step with state.json.

Routers live inside the agent process, so they die with it; what makes that survivable is that their
listen address and last backends are persisted after every change and recreated on the next start.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable
from typing import Any

from shipyard.agent.errors import AgentRequestError, ConflictError, NotFoundError
from shipyard.agent.state import RouterRecord
from shipyard.proxy import Backend, RouterOptions, RouterServer

log = logging.getLogger(__name__)

Key = tuple[str, str]


def parse_backends(raw: Any) -> list[Backend]:
    """Validate backends from JSON here, so a bad one is a 400 naming the field, not a 500."""
    if not isinstance(raw, list):
        raise AgentRequestError("backends must be a list of {address, weight, revision, instance}")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("address"), str):
            raise AgentRequestError(f"backends[{i}]: address (host:port) is required")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise AgentRequestError(f"backends[{i}]: weight must be an integer >= 0")
        out.append(Backend(address=item["address"], weight=weight, revision=str(item.get("revision", "")),
                           instance=str(item.get("instance", ""))))
    return out


def _as_dict(b: Backend) -> dict[str, Any]:
    return {"address": b.address, "weight": b.weight, "revision": b.revision, "instance": b.instance}


class RouterRegistry:
    """Creates, updates and closes routers; calls `on_change` whenever persisted facts change."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self._on_change = on_change or (lambda: None)
        self._servers: dict[Key, RouterServer] = {}
        self._backends: dict[Key, list[Backend]] = {}
        self._requested: dict[Key, str] = {}    # listen as asked ("...:0" resolves to a real port)

    def servers(self) -> list[RouterServer]:
        return list(self._servers.values())

    def records(self) -> list[RouterRecord]:
        return [RouterRecord(service=k[0], env=k[1], listen=s.listen,
                             backends=[_as_dict(b) for b in self._backends.get(k, [])],
                             options=s.options.as_dict())
                for k, s in self._servers.items()]

    def describe(self, service: str, env: str) -> dict[str, Any]:
        key = (service, env)
        server = self._get(key)
        return {"service": service, "env": env, "listen": server.listen,
                "backends": [_as_dict(b) for b in self._backends.get(key, [])],
                "options": server.options.as_dict()}

    def _get(self, key: Key) -> RouterServer:
        try:
            return self._servers[key]
        except KeyError:
            raise NotFoundError(f"no router for {key[0]}/{key[1]}") from None

    async def ensure(self, service: str, env: str, listen: str, options: Any = None) -> dict[str, Any]:
        """Start a router on `listen`; the same listen again only applies `options`, a new one moves it.

        When moving, the new socket is bound first, so a failed move leaves the old router serving.
        """
        try:
            opts = RouterOptions.from_mapping(options)
        except ValueError as exc:
            raise AgentRequestError(f"options: {exc}") from exc
        key = (service, env)
        current = self._servers.get(key)
        if current is not None and listen in (current.listen, self._requested.get(key)):
            if current.options != opts:
                current.apply_options(opts)
                self._on_change()
            return self.describe(service, env)
        server = await self._start(service, env, listen, opts)
        server.set_backends(self._backends.get(key, []))
        self._servers[key], self._requested[key] = server, listen
        if current is not None:
            await current.close()
        self._on_change()
        return self.describe(service, env)

    async def _start(self, service: str, env: str, listen: str, options: RouterOptions) -> RouterServer:
        try:
            server = RouterServer.with_options(f"{service}/{env}", listen, options)
        except ValueError as exc:
            raise AgentRequestError(f"listen: {exc}") from exc
        try:
            await server.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConflictError(
                    f"cannot listen on {listen} for {service}/{env}: the address is already in use "
                    "(another process or router holds it; pick another listen address)") from exc
            raise ConflictError(f"cannot listen on {listen} for {service}/{env}: {exc}") from exc
        log.info("router %s/%s listening on %s", service, env, server.listen)
        return server

    def set_backends(self, service: str, env: str, raw: Any) -> dict[str, Any]:
        key = (service, env)
        server = self._get(key)
        backends = parse_backends(raw)
        try:
            server.set_backends(backends)
        except ValueError as exc:
            raise AgentRequestError(str(exc)) from exc
        self._backends[key] = backends
        self._on_change()
        return self.describe(service, env)

    async def drain(self, service: str, env: str, address: str, timeout: float,
                    ws_timeout: float | None = None) -> dict[str, Any]:
        """proxy.DrainReport as a dict: {"remaining": n, "http_left", "ws_closed", "ws_cut"}."""
        server = self._get((service, env))
        try:
            return (await server.drain(address, timeout, ws_timeout=ws_timeout)).as_dict()
        except ValueError as exc:     # still routed to: draining it would never finish
            raise ConflictError(str(exc)) from exc

    def stats(self, service: str, env: str) -> dict[str, Any]:
        return dict(self._get((service, env)).stats())

    async def delete(self, service: str, env: str) -> None:
        key = (service, env)
        server = self._get(key)
        del self._servers[key]
        self._backends.pop(key, None)
        self._requested.pop(key, None)
        await server.close()
        self._on_change()

    async def restore(self, records: Iterable[RouterRecord]) -> None:
        """Recreate persisted routers; one that cannot bind is logged and dropped (the next
        ensure_router of a deploy creates it again, and reports the conflict to its caller)."""
        for rec in records:
            key = (rec.service, rec.env)
            try:
                self._backends[key] = parse_backends(rec.backends)
                server = await self._start(rec.service, rec.env, rec.listen,
                                           RouterOptions.from_mapping(rec.options))
                server.set_backends(self._backends[key])
            except (AgentRequestError, ValueError) as exc:
                log.error("router %s/%s not restored: %s", rec.service, rec.env, exc)
                self._backends.pop(key, None)
                continue
            self._servers[key], self._requested[key] = server, rec.listen

    async def close_all(self) -> None:
        for server in list(self._servers.values()):
            await server.close()
