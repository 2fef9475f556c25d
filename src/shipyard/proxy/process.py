"""`python -m shipyard.proxy.process`: one router generation, started and watched by the keeper.

A generation's life, driven by keeper messages over its channel (channel.py):
1. hello: the interpreter is up and imported; the keeper keeps one such standby ready, so a crashed
   router is replaced in milliseconds, not in an interpreter start.
2. go: load the committed routing table, take the listening sockets from the keeper (dups of the
   ones it holds), start accepting, then serve the admin API on router.sock: "serving".
3. release-admin (only when a newer generation is about to take over): refuse changes, stop serving
   the admin socket, let the change in progress finish: "admin-released". The newer one then reads
   the table and no change can be lost between the two.
4. retire: stop accepting (the newer one accepts from the same sockets), finish in-flight requests and
   tunnels within the budget, exit.
With --workers N > 1 the generation is this process (the lead: table, admin API, keeper channel) and
N-1 worker processes (worker.py, workerpool.py) accepting from the same sockets; they are told every
change before it is acknowledged and retire with the lead.
If the keeper goes away, the newest generation told to go keeps serving and waits on router-handoff.sock
for the next keeper, which adopts it by receiving its sockets; exactly one generation may wait there:
- a standby exits; one still activating exits unless it already serves the admin socket;
- a generation that released its admin for a successor (a handover the keeper did not finish) asks
  router.sock who serves it: a newer generation means it retires, none means it takes the admin back;
- a retiring one carries on retiring.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import select
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from shipyard.adminweb import serve_unix
from shipyard.ipc import bind_unix, loop_factory

from .admin import AdminState, make_app
from .channel import Channel, ChannelClosed, Message
from .paths import ProxyPaths
from .registry import RouterRegistry
from .workerpool import WorkerPool

log = logging.getLogger("shipyard.router")

RETIRE_BUDGET = 60.0       # seconds an old generation may take to finish requests and tunnels
SUCCESSOR_PROBE = 3.0      # seconds a released generation waits for a successor to answer router.sock


class KeeperListeners:
    """The ListenerSource of a router process: sockets come from (and go back to) the keeper."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.socks: dict[str, socket.socket] = {}

    async def acquire(self, listen: str) -> socket.socket:
        try:
            msg, fds = await self.channel.request({"op": "listener", "listen": listen})
        except (ChannelClosed, TimeoutError) as exc:
            raise OSError(errno.EIO, f"the keeper did not lend the socket: {exc or 'no answer'}") from exc
        if not msg.get("ok") or not fds:
            for fd in fds:
                os.close(fd)
            raise OSError(int(msg.get("errno") or errno.EIO), str(msg.get("error") or "the keeper refused"))
        for fd in fds[1:]:
            os.close(fd)
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        self.socks[str(msg.get("listen") or listen)] = sock
        return sock

    async def release(self, listen: str) -> None:
        self.socks.pop(listen, None)
        with contextlib.suppress(ChannelClosed, TimeoutError):
            await self.channel.request({"op": "release", "listen": listen})

    def fds(self, listens: list[str]) -> list[int]:
        return [self.socks[x].fileno() for x in listens if x in self.socks and self.socks[x].fileno() >= 0]


def _pid_alive(pidfd: int | None) -> Callable[[], bool]:
    """A cheap "is the previous generation still running" check: a pidfd turns readable at exit."""
    def alive() -> bool:
        if pidfd is None:
            return False
        readable, _, _ = select.select([pidfd], [], [], 0)
        return not readable
    return alive


class Generation:
    def __init__(self, paths: ProxyPaths, channel_sock: socket.socket, admin_sock: socket.socket,
                 number: int, workers: int = 1) -> None:
        self.paths = paths
        self.number = number
        self.workers = workers
        self.pool: WorkerPool | None = None
        self.admin_sock = admin_sock
        self.channel = Channel(channel_sock, self._on_message, self._on_keeper_gone)
        self.listeners = KeeperListeners(self.channel)
        self.registry: RouterRegistry | None = None
        self.admin: AdminState | None = None
        self.runner: web.AppRunner | None = None
        self.site: web.SockSite | None = None
        self.role = "standby"       # -> activating -> active -> released -> retiring
        self.keeper_gone = False
        self.done: asyncio.Future[Any] | None = None       # the exit code
        self._go: asyncio.Future[Any] | None = None        # the predecessor's pid (or None)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._released: asyncio.Future[None] | None = None     # the release-admin under way or done

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        self._go = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self.retire_soon(RETIRE_BUDGET))
        self.channel.start()
        self.channel.send({"op": "hello", "pid": os.getpid(), "generation": self.number})
        await asyncio.wait([self._go, self.done], return_when=asyncio.FIRST_COMPLETED)
        if self.done.done():
            return self.done.result()
        await self.activate(self._go.result())
        return await self.done

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _finish(self, code: int) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(code)

    # ---- keeper messages -------------------------------------------------------------------------
    def _on_message(self, msg: Message, fds: list[int]) -> None:
        for fd in fds:                      # nothing the keeper sends unasked carries fds
            os.close(fd)
        op = msg.get("op")
        # Roles change here, synchronously, not in the tasks spawned: the keeper's last messages and
        # its channel's end can arrive in one read, and _on_keeper_gone must see what they said.
        if op == "go" and self._go is not None and not self._go.done():
            self.role = "activating"
            self._go.set_result(msg.get("predecessor"))
        elif op == "release-admin":
            if self.role == "active":
                self.role = "released"
            self._released = asyncio.ensure_future(self._release_admin(msg))
        elif op == "retire":
            self.retire_soon(float(msg.get("timeout") or RETIRE_BUDGET))
        else:
            log.warning("unexpected keeper message %r", op)

    async def activate(self, predecessor: int | None) -> None:
        pidfd = None
        if predecessor:
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(predecessor)
        self.registry = RouterRegistry(self.paths.table, self.listeners, predecessor_alive=_pid_alive(pidfd),
                                       legacy=self.paths.legacy_state)
        await self.registry.load()
        if self.workers > 1:
            # Started once this process serves (a takeover is not delayed by interpreter starts); each
            # gets the table when it says hello, and every change from then on.
            self.pool = WorkerPool(self.paths, self.number, self.workers, self.registry.snapshot)
            self.registry.peers = self.pool
        with contextlib.suppress(ChannelClosed, TimeoutError):
            await self.channel.request({"op": "keep", "listens": self.registry.listens()})
        if self.keeper_gone or self.role != "activating":
            # Lost the keeper (or told to retire) before serving the admin socket: what this process
            # loaded may lack sockets it could not get, and the predecessor that released the admin
            # takes it back when nobody answers there.
            log.info("generation %d stops before serving (%s)", self.number,
                     "keeper gone" if self.keeper_gone else self.role)
            await self.registry.close_all()
            self._finish(0)
            return
        self.admin = AdminState(self.registry, self.number)
        self.runner, self.site = await self._serve_admin()
        if self.role == "activating":
            self.role = "active"
        with contextlib.suppress(ChannelClosed):
            self.channel.send({"op": "serving", "pid": os.getpid(), "generation": self.number,
                               "routers": len(self.registry.servers())})
        log.info("router generation %d (pid %d) serving %d routers", self.number, os.getpid(),
                 len(self.registry.servers()))
        if self.pool is not None:
            self.pool.start()
        if self.keeper_gone and self.role == "active":       # it went while the admin site started
            self._spawn(self._await_adoption())

    async def _serve_admin(self) -> tuple[web.AppRunner, web.SockSite]:
        """Serve the admin socket from a dup: stopping the site closes the socket it was given, and the
        original must stay open to be served again (a handover that did not finish) or handed on."""
        assert self.admin is not None
        return await serve_unix(make_app(self.admin), self.admin_sock.dup())

    async def _release_admin(self, msg: Message) -> None:
        await self.stop_admin()
        with contextlib.suppress(ChannelClosed):
            self.channel.reply(msg, {"op": "admin-released"})

    async def stop_admin(self) -> None:
        if self.admin is not None:
            self.admin.frozen = True
        if self.site is not None:
            await self.site.stop()
            self.site = None
        if self.registry is not None:
            await self.registry.quiesce()

    def retire_soon(self, budget: float) -> None:
        if self.role != "retiring":
            was, self.role = self.role, "retiring"
            self._spawn(self._retire(was, budget))

    async def _retire(self, was: str, budget: float) -> None:
        """Stop accepting, let what is under way finish (bounded), exit."""
        if self.registry is None or was in ("standby", "activating"):
            self._finish(0)
            return
        await self.stop_admin()
        self.registry.stop_accepting()
        ours, theirs = await asyncio.gather(self.registry.finish(budget),
                                            self.pool.retire(budget) if self.pool is not None else _zero())
        cut = ours + theirs
        log.info("router generation %d retired (%d connections cut)", self.number, cut)
        if self.runner is not None:
            await self.runner.cleanup()
        self._finish(0)

    # ---- losing the keeper -------------------------------------------------------------------------
    def _on_keeper_gone(self) -> None:
        self.keeper_gone = True
        if self.role == "active":
            log.warning("keeper gone: serving on, waiting for a new keeper on %s", self.paths.handoff)
            self._spawn(self._await_adoption())
        elif self.role == "released":
            self._spawn(self._after_unfinished_handover())
        elif self.role == "standby":
            log.info("keeper gone: standby generation %d exits", self.number)
            self._finish(0)
        else:       # activating: activate() decides; retiring: carries on
            log.info("keeper gone: generation %d (%s) carries on", self.number, self.role)

    async def _after_unfinished_handover(self) -> None:
        """The keeper died between asking us for the admin socket and telling us to retire."""
        if self._released is not None:
            await self._released            # our own site must not be the one that answers the probe
        successor = await _admin_generation(self.paths.router_sock, SUCCESSOR_PROBE)
        if self.role != "released":
            return
        if successor is not None and successor > self.number:
            log.info("keeper gone mid-handover: generation %d serves, generation %d retires", successor,
                     self.number)
            self.retire_soon(RETIRE_BUDGET)
            return
        log.warning("keeper gone mid-handover and no successor serves: generation %d takes the admin "
                    "socket back and waits for a new keeper on %s", self.number, self.paths.handoff)
        if self.runner is not None:
            await self.runner.cleanup()
        assert self.admin is not None
        self.admin.frozen = False
        self.runner, self.site = await self._serve_admin()
        self.role = "active"
        await self._await_adoption()

    async def _await_adoption(self) -> None:
        """Hand our sockets to the next keeper that connects; its connection becomes our channel."""
        loop = asyncio.get_running_loop()
        try:
            server = bind_unix(self.paths.handoff, socket.SOCK_SEQPACKET, backlog=4)
            ours = os.stat(self.paths.handoff).st_ino
        except OSError as exc:
            log.error("cannot wait for a new keeper on %s: %s", self.paths.handoff, exc)
            return
        server.setblocking(False)
        try:
            conn, _ = await loop.sock_accept(server)
        finally:
            server.close()
            _unlink_if(self.paths.handoff, ours)
        assert self.registry is not None
        listens = self.registry.listens()
        conn.setblocking(True)
        socket.send_fds(conn, [_encode({"op": "adopt", "pid": os.getpid(), "generation": self.number,
                                        "listens": listens})],
                        [self.admin_sock.fileno(), *self.listeners.fds(listens)])
        self.channel = Channel(conn, self._on_message, self._on_keeper_gone)
        self.listeners.channel = self.channel
        self.keeper_gone = False
        self.channel.start()
        log.info("adopted by a new keeper")


async def _admin_generation(sock_path: Path, timeout: float) -> int | None:
    """The generation serving the admin socket now, or None when nobody answers within `timeout`."""
    try:
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock_path)),
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as http, \
                http.get("http://router/v1/status") as resp:
            data = await resp.json()
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError):
        return None
    number = data.get("generation") if isinstance(data, dict) else None
    return number if isinstance(number, int) else None


def _unlink_if(path: Path, inode: int) -> None:
    """Remove the socket file only while it is still ours: a newer generation may have bound its own."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_ino == inode:
            path.unlink()


async def _zero() -> int:
    return 0


def _encode(msg: Message) -> bytes:
    return json.dumps(msg).encode()



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipyard.proxy.process",
                                     description="a shipyard router generation (started by the keeper)")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--channel-fd", required=True, type=int)
    parser.add_argument("--admin-fd", required=True, type=int)
    parser.add_argument("--generation", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="processes serving this generation's traffic")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s router[{args.generation}]: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    channel = socket.socket(fileno=args.channel_fd)
    admin = socket.socket(fileno=args.admin_fd)
    gen = Generation(ProxyPaths(args.state_dir), channel, admin, args.generation, max(1, args.workers))
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(gen.run())


if __name__ == "__main__":
    sys.exit(main())
