"""`python -m shipyard.proxy.worker`: one more process serving a router generation's traffic.

A generation's lead (process.py) owns the routing table, the admin API and the keeper channel. With
more than one worker (the keeper's --router-workers, default one per CPU) it also starts workers
(workerpool.py) that serve the same routers from the same listening sockets: the kernel gives each new
connection to one of the processes accepting on a socket, so a host's routing uses every core, as
HAProxy's threads do, while a Python process is bound to one.

A worker keeps nothing of its own. Its lead sends it every route (record + listening socket) when it
says hello, and each change before the lead acknowledges it; asks it for its numbers (observe.py) and
to drain a backend; and tells it to retire with its generation. A worker whose lead is gone stops
accepting at once and finishes what it has (bounded), then exits: the next generation serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from typing import Any

from shipyard.ipc import loop_factory

from .channel import Channel, ChannelClosed, Message
from .observe import observation
from .options import RouterOptions
from .registry import parse_backends
from .server import RouterServer
from .table import RouteRecord

log = logging.getLogger("shipyard.router")

ORPHAN_BUDGET = 30.0      # seconds a worker whose lead died may take to finish its requests
Key = tuple[str, str]


class Worker:
    def __init__(self, channel_sock: socket.socket, generation: int) -> None:
        self.generation = generation
        self.channel = Channel(channel_sock, self._on_message, self._on_lead_gone)
        self.servers: dict[Key, RouterServer] = {}
        self.inbox: asyncio.Queue[tuple[Message, list[int]]] = asyncio.Queue()
        self.done: asyncio.Future[int] | None = None
        self.retiring = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self._spawn(self.retire(ORPHAN_BUDGET)))
        self.channel.start()
        self.channel.send({"op": "hello", "pid": os.getpid()})
        consumer = loop.create_task(self._consume())
        try:
            return await self.done
        finally:
            consumer.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_message(self, msg: Message, fds: list[int]) -> None:
        # Changes are applied one at a time, in the order the lead sent them.
        self.inbox.put_nowait((msg, fds))

    async def _consume(self) -> None:
        while True:
            msg, fds = await self.inbox.get()
            try:
                answer = await self._apply(msg, fds)
            except (ValueError, OSError) as exc:
                log.error("worker: %s failed: %s", msg.get("op"), exc)
                answer = {"ok": False, "error": str(exc)}
            if answer is not None and "id" in msg:
                with contextlib.suppress(ChannelClosed):
                    self.channel.reply(msg, answer)

    async def _apply(self, msg: Message, fds: list[int]) -> Message | None:
        op = msg.get("op")
        if op == "route":
            await self._route(RouteRecord.from_dict(msg["record"]), fds)
            return {"ok": True}
        for fd in fds:
            os.close(fd)
        if op == "unroute":
            server = self.servers.pop((str(msg["service"]), str(msg["env"])), None)
            if server is not None:
                await server.close()
            return {"ok": True}
        if op == "observe":
            keys = [tuple(k) for k in msg.get("keys") or []]
            return {"ok": True, "routers": {f"{s}/{e}": observation(self.servers[(s, e)])
                                            for s, e in keys if (s, e) in self.servers}}
        if op == "drain":
            server = self.servers.get((str(msg["service"]), str(msg["env"])))
            if server is None:
                return {"ok": True, "report": {}}
            # Started in order (after every change sent before it), waited for alongside later messages.
            drain = asyncio.ensure_future(server.drain(str(msg["address"]), float(msg["timeout"]),
                                                       ws_timeout=msg.get("ws_timeout")))
            self._spawn(self._answer_drain(msg, drain))
            await asyncio.sleep(0)      # let it make its checks before the next message is applied
            return None
        if op == "retire":
            self._spawn(self.retire(float(msg.get("budget") or ORPHAN_BUDGET), msg))
            return None
        log.warning("worker: unknown op %r", op)
        return {"ok": False, "error": f"unknown op {op!r}"}

    async def _route(self, rec: RouteRecord, fds: list[int]) -> None:
        """Make this process serve `rec`: a new listen takes the socket sent along, else it is closed."""
        sock = socket.socket(fileno=fds[0]) if fds else None
        for fd in fds[1:]:
            os.close(fd)
        options = RouterOptions.from_mapping(rec.options)
        backends = parse_backends(rec.backends)
        current = self.servers.get(rec.key)
        if current is not None and current.listen == rec.listen:
            if sock is not None:
                sock.close()
            if current.options != options:
                current.apply_options(options)
            current.set_backends(backends)
            return
        if sock is None:
            raise ValueError(f"route {rec.service}/{rec.env}: no listening socket for {rec.listen}")
        sock.setblocking(False)
        server = RouterServer.with_options(f"{rec.service}/{rec.env}", rec.listen, options)
        server.set_backends(backends)
        try:
            await server.start(sock)
        except OSError:
            sock.close()
            raise
        self.servers[rec.key] = server
        if current is not None:
            await current.close()

    async def _answer_drain(self, msg: Message, drain: asyncio.Future[Any]) -> None:
        try:
            answer: Message = {"ok": True, "report": (await drain).as_dict()}
        except ValueError as exc:
            answer = {"ok": False, "error": str(exc)}
        with contextlib.suppress(ChannelClosed):
            self.channel.reply(msg, answer)

    async def retire(self, budget: float, msg: Message | None = None) -> None:
        """Stop accepting, finish what is under way within `budget`, answer how many were cut, exit."""
        if self.retiring:
            return
        self.retiring = True
        servers = list(self.servers.values())
        for server in servers:
            server.stop_accepting()
        cut = sum(await asyncio.gather(*(s.finish(budget) for s in servers)))
        if msg is not None:
            with contextlib.suppress(ChannelClosed):
                self.channel.reply(msg, {"ok": True, "cut": cut})
        if cut:
            log.info("router worker (generation %d) retired, %d connections cut", self.generation, cut)
        if self.done is not None and not self.done.done():
            self.done.set_result(0)

    def _on_lead_gone(self) -> None:
        if not self.retiring:
            log.warning("router worker (generation %d): the lead is gone; finishing and exiting",
                        self.generation)
            self._spawn(self.retire(ORPHAN_BUDGET))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipyard.proxy.worker",
                                     description="a shipyard router worker (started by a router generation)")
    parser.add_argument("--state-dir", required=True, help="the agent state dir (names the host in ps)")
    parser.add_argument("--channel-fd", required=True, type=int)
    parser.add_argument("--generation", type=int, default=1)
    parser.add_argument("--index", type=int, default=1)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s router[{args.generation}.{args.index}]: %(message)s")
    worker = Worker(socket.socket(fileno=args.channel_fd), args.generation)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(worker.run())


if __name__ == "__main__":
    sys.exit(main())
