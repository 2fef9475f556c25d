"""A host's agent, driven from the controller through its unix socket forwarded over the host's SSH
connection (asyncssh's streamlocal forwarding): the agent never listens on the network, and whoever can
reach it has already passed SSH's key checks.

Each host gets a local socket in a private (0700) temp dir; an AgentClient on that socket is the same
client the local target uses, so a remote instance is started, listed, kept warm and stopped exactly like a
local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh
import httpx

from shipyard.agent.client import AgentClient
from shipyard.errors import AgentError, AgentUnavailableError, SshError, SshUnreachable
from shipyard.hosts.setup import hostctl
from shipyard.ssh import SshPool


class HostAgentClient(AgentClient):
    """An AgentClient whose transport failures name the host and the command that fixes them."""

    def __init__(self, host: str, where: str, local: Path, timeout: float,
                 listening: Callable[[], Awaitable[bool]]) -> None:
        super().__init__(local, timeout=timeout, retry_budget=0)
        self.host, self.where, self.listening = host, where, listening

    async def _call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return await super()._call(method, path, **kw)
        except AgentUnavailableError as exc:
            raise self._unavailable() from exc
        except AgentError as exc:
            if type(exc) is not AgentError:
                raise                     # the agent answered and refused: its own message stands
            # Through a forward, "nothing listens there" reaches httpx as a hang-up: ask the host which.
            if not await self.listening():
                raise self._unavailable() from exc
            raise AgentError(f"{self.where}: {str(exc).split(': ', 1)[-1]}") from exc

    def _unavailable(self) -> AgentUnavailableError:
        return AgentUnavailableError(f"{self.where}: the shipyard agent does not answer "
                                     f"(`shipyard hosts setup {self.host}` installs and starts it)")


def remote_root(pool: SshPool, host: str) -> str:
    return pool.host(host).release_dir


def remote_socket(pool: SshPool, host: str) -> str:
    return str(PurePosixPath(remote_root(pool, host)) / "agent" / "agent.sock")


class RemoteAgents:
    """The agents of a pool's hosts, one forwarded socket and client per host, closed together."""

    def __init__(self, pool: SshPool, *, timeout: float = 30.0) -> None:
        self.pool, self.timeout = pool, timeout
        self._dir = Path(tempfile.mkdtemp(prefix="shy-fwd-"))     # mkdtemp makes it 0700
        self._clients: dict[str, HostAgentClient] = {}
        self._listeners: dict[str, Any] = {}
        self._conns: dict[str, Any] = {}
        self._made = 0
        self._lock = asyncio.Lock()

    async def client(self, host: str) -> AgentClient:
        async with self._lock:
            conn = await self.pool.connection(host)
            if host in self._clients and self._conns.get(host) is conn:
                return self._clients[host]
            await self.forget(host)          # made over a connection that has since been replaced
            self._made += 1
            local = self._dir / f"h{self._made}"
            local.mkdir(mode=0o700)
            try:
                listener = await conn.forward_local_path(str(local / "agent.sock"), remote_socket(self.pool, host))
            except OSError as exc:
                raise SshUnreachable(f"{self.pool.host(host).where}: cannot forward the agent's socket: {exc}",
                                     host) from exc
            self._listeners[host] = listener
            self._conns[host] = conn
            client = HostAgentClient(host, self.pool.host(host).where, local, self.timeout,
                                     lambda: self._listening(conn, host))
            self._clients[host] = client
            return client

    async def _listening(self, conn: Any, host: str) -> bool:
        """Whether the agent's socket on the host accepts a connection: False only when the host says nothing
        listens there (a lost connection or a timeout is not that: the caller's own error stands)."""
        try:
            _, writer = await asyncio.wait_for(conn.open_unix_connection(remote_socket(self.pool, host)),
                                               self.timeout)
        except asyncssh.ChannelOpenError:
            return False
        except (OSError, asyncssh.Error, TimeoutError):
            return True
        writer.close()
        return True

    async def ensure(self, host: str) -> AgentClient:
        """The host's agent started (keeper and agent, as `hosts setup` leaves them) if it does not answer,
        then its client; TargetError when the host cannot start it (no runtime installed, ...)."""
        await hostctl(self.pool, host, "ensure")
        return await self.client(host)

    async def forget(self, host: str) -> None:
        """Drop a host's forward (its connection broke): the next client() opens a new one."""
        client, listener = self._clients.pop(host, None), self._listeners.pop(host, None)
        self._conns.pop(host, None)
        if client is not None:
            await client.aclose()
        if listener is not None:
            listener.close()

    async def aclose(self) -> None:
        for host in list(self._clients):
            with contextlib.suppress(SshError, OSError):
                await self.forget(host)
        shutil.rmtree(self._dir, ignore_errors=True)
