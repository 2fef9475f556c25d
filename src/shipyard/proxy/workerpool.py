"""A router generation's workers, from its lead's side (the worker process is worker.py).

The lead starts `count - 1` workers once it serves, and keeps that many: one that dies is started
again (without delay at first, then with a growing one if it keeps dying) and, when it says hello,
is sent every route before any later change, so it can never serve an older table than the lead.
Changes go to every worker and are waited for before the lead acknowledges them; a worker that does
not answer in time is killed and replaced (its replacement starts from the full table), so one stuck
worker never blocks a deploy. Numbers and drains are asked of all workers and summed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from . import children
from .channel import Channel, ChannelClosed, Message, pair
from .children import Backoff, Child
from .drain import DrainReport
from .paths import ProxyPaths
from .table import RouteRecord

log = logging.getLogger("shipyard.router")

CHANGE_TIMEOUT = 5.0       # seconds a worker has to apply a change before it is replaced
Key = tuple[str, str]
Routes = Callable[[], list[tuple[RouteRecord, int]]]


class WorkerPool:
    """`count - 1` worker processes beside the lead; `routes()` snapshots (record, listening fd) pairs."""

    def __init__(self, paths: ProxyPaths, generation: int, count: int, routes: Routes) -> None:
        self.paths = paths
        self.generation = generation
        self.wanted = max(0, count - 1)
        self.routes = routes
        self.workers: list[Child] = []
        self.ready: list[Child] = []     # said hello and got the table: changes go to these
        self.stopping = False
        self.backoff = Backoff(free=3, initial=0.5, maximum=5.0, reset_after=10.0)
        self._index = 0
        self._timer: asyncio.TimerHandle | None = None

    # ---- processes -------------------------------------------------------------------------------
    def start(self) -> None:
        for _ in range(self.wanted - len(self.workers)):
            self._spawn()

    def _spawn(self) -> None:
        self._timer = None
        if self.stopping or len(self.workers) >= self.wanted:
            return
        self._index += 1
        mine, theirs = pair()
        argv = [sys.executable, "-m", "shipyard.proxy.worker", "--state-dir", str(self.paths.state_dir),
                "--channel-fd", str(theirs.fileno()), "--generation", str(self.generation),
                "--index", str(self._index)]
        try:
            child = children.spawn("worker", argv, self.paths.router_log, pass_fds=(theirs.fileno(),))
        except OSError as exc:
            mine.close()
            log.error("cannot start a router worker: %s", exc)
            self._later(self.backoff.next_delay(0.0) or 1.0)
            return
        finally:
            theirs.close()
        child.generation = self.generation

        def on_message(msg: Message, fds: list[int]) -> None:
            for fd in fds:
                os.close(fd)
            if msg.get("op") == "hello":
                self._sync(child)

        def on_close() -> None:
            if child.alive and not self.stopping:
                log.warning("router worker %d closed its channel: stopping it", child.pid)
                child.signal(signal.SIGKILL)

        child.channel = Channel(mine, on_message, on_close)
        child.channel.start()
        children.watch(child, self._exited)
        self.workers.append(child)

    def _sync(self, child: Child) -> None:
        """Every route, sent in one go: a change made later reaches this worker after all of them."""
        try:
            for record, fd in self.routes():
                child.channel.send({"op": "route", "record": asdict(record)}, [fd])
        except ChannelClosed:
            return
        child.state = "ready"
        self.ready.append(child)

    def _exited(self, child: Child) -> None:
        with contextlib.suppress(ValueError):
            self.workers.remove(child)
        with contextlib.suppress(ValueError):
            self.ready.remove(child)
        child.channel.close()
        if self.stopping:
            return
        log.warning("router worker %d (generation %d) exited with %s", child.pid, self.generation,
                    child.returncode)
        self._later(self.backoff.next_delay(time.monotonic() - child.started))

    def _later(self, delay: float) -> None:
        if self._timer is None and not self.stopping:
            self._timer = asyncio.get_running_loop().call_later(delay, self._spawn)

    def pids(self) -> list[int]:
        return [c.pid for c in self.workers if c.alive]

    # ---- what the lead asks of all of them -------------------------------------------------------
    async def _ask(self, msg: Message, timeout: float, fds: tuple[int, ...] = ()) -> list[Message]:
        """`msg` to every ready worker at once; the answers of those that gave one."""
        targets = list(self.ready)
        results = await asyncio.gather(*(c.channel.request(msg, timeout, fds) for c in targets),
                                       return_exceptions=True)
        answers: list[Message] = []
        for child, result in zip(targets, results, strict=True):
            if isinstance(result, TimeoutError):
                log.error("router worker %d did not answer %r within %gs: replacing it", child.pid,
                          msg.get("op"), timeout)
                child.signal(signal.SIGKILL)
            elif isinstance(result, tuple):
                answer, extra = result
                for fd in extra:
                    os.close(fd)
                answers.append(answer)
        return answers

    async def route(self, record: RouteRecord, fd: int) -> None:
        """Apply a committed route in every worker (sent with its listening socket)."""
        for answer in await self._ask({"op": "route", "record": asdict(record)}, CHANGE_TIMEOUT, (fd,)):
            if not answer.get("ok"):
                log.error("a router worker refused route %s/%s: %s", record.service, record.env,
                          answer.get("error"))

    async def unroute(self, key: Key) -> None:
        await self._ask({"op": "unroute", "service": key[0], "env": key[1]}, CHANGE_TIMEOUT)

    async def observe(self, keys: list[Key]) -> list[dict[str, Any]]:
        """Per worker, {"service/env": observation} for the routers asked about."""
        answers = await self._ask({"op": "observe", "keys": [list(k) for k in keys]}, CHANGE_TIMEOUT)
        return [dict(a.get("routers") or {}) for a in answers if a.get("ok")]

    async def drain(self, key: Key, address: str, timeout: float, ws_timeout: float | None) -> DrainReport:
        """The workers' drains of `address`, summed (each waits for its own requests and tunnels)."""
        budget = max(timeout, ws_timeout or 0.0) + CHANGE_TIMEOUT
        total = DrainReport()
        for answer in await self._ask({"op": "drain", "service": key[0], "env": key[1], "address": address,
                                       "timeout": timeout, "ws_timeout": ws_timeout}, budget):
            report = answer.get("report") or {}
            total = DrainReport(http_left=total.http_left + int(report.get("http_left") or 0),
                                ws_closed=total.ws_closed + int(report.get("ws_closed") or 0),
                                ws_cut=total.ws_cut + int(report.get("ws_cut") or 0))
        return total

    async def retire(self, budget: float) -> int:
        """With the generation: every worker stops accepting and finishes; returns connections cut."""
        self.stopping = True
        if self._timer is not None:
            self._timer.cancel()
        answers = await self._ask({"op": "retire", "budget": budget}, budget + CHANGE_TIMEOUT)
        for child in list(self.workers):
            child.signal(signal.SIGTERM)
        await asyncio.gather(*(c.wait(10.0) for c in list(self.workers)))
        return sum(int(a.get("cut") or 0) for a in answers)
