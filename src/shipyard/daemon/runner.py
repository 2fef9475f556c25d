"""The daemon's loop over its work leases (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from shipyard.dburl import is_sqlite
from shipyard.errors import ShipyardError
from shipyard.store import Store
from shipyard.store import daemon_leases as dl
from shipyard.store.models import DaemonLease
from shipyard.store.owner import current_owner

log = logging.getLogger("shipyard.daemon")
STOP_GRACE = 30.0


@dataclass(frozen=True)
class Work:
    name: str
    run: Callable[[asyncio.Event], Coroutine[Any, Any, None]]     # returns soon after the event is set


@dataclass
class _Running:
    task: asyncio.Task[None]
    stop: asyncio.Event


class Daemon:
    def __init__(self, store: Store, works: list[Work], *, ttl: float = 15.0, owner: str | None = None,
                 say: Callable[[str], None] | None = None) -> None:
        self.store, self.works, self.ttl = store, works, ttl
        self.owner = owner or current_owner()
        self.say = say or log.info
        self.running: dict[str, _Running] = {}
        self._told: set[str] = set()
        self._renewed: dict[str, float] = {}        # loop time of each work's last successful claim
        # SQLite is one machine's file, meant for one daemon: a second one there is most likely a mistake
        # (two terminals), so it is told in one line what it does and does not do, once.
        self._alone = is_sqlite(store.engine.url)

    def status(self) -> dict[str, Any]:
        return {"owner": self.owner, "running": sorted(n for n, r in self.running.items() if not r.task.done())}

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.ttl / 3)
        finally:
            await self.shutdown()

    async def tick(self) -> None:
        for work in self.works:
            now = asyncio.get_running_loop().time()
            try:
                held = await asyncio.to_thread(self._claim, work.name)
            except ShipyardError as exc:
                # The database is unreachable: what runs goes on while the lease may still be ours; past
                # its TTL another daemon may hold it, so it stops here (never twice at once).
                self.say(f"cannot renew {work.name}: {exc}")
                if work.name in self.running and now - self._renewed.get(work.name, now) >= self.ttl:
                    self.say(f"{work.name}: its lease may have passed to another daemon; stopping it here")
                    await self._stop(work.name)
                continue
            if held:
                self._renewed[work.name] = now
            running = self.running.get(work.name)
            if running is not None and running.task.done():
                self._report_end(work.name, running.task)
                del self.running[work.name]
                running = None
            if held and running is None:
                self._start(work)
            elif not held and running is not None:
                self.say(f"{work.name}: another daemon holds it now; stopping it here")
                await self._stop(work.name)
            elif not held and work.name not in self._told:
                self._told.add(work.name)
                await asyncio.to_thread(self._tell_held, work.name)

    def _tell_held(self, work: str) -> None:
        if not self._alone:
            self.say(f"{work}: another daemon runs it; this one takes it over if that one stops")
            return
        if len(self._told) == 1:
            holder = next((r.owner for r in self._holders() if r.work == work), "another daemon")
            self.say(f"another shipyard serve ({holder}) runs the background work on this SQLite state: on SQLite "
                     f"one daemon works alone, so this one serves the API only and takes the work over if that "
                     f"one stops (share work between daemons with a PostgreSQL `state:`)")

    def _holders(self) -> list[DaemonLease]:
        with self.store.session(readonly=True) as s:
            return dl.holders(s)

    def _claim(self, work: str) -> bool:
        with self.store.session() as s:
            return dl.claim(s, work, self.owner, self.ttl)

    def _start(self, work: Work) -> None:
        stop = asyncio.Event()
        self.running[work.name] = _Running(asyncio.create_task(work.run(stop), name=f"daemon:{work.name}"), stop)
        self._told.discard(work.name)
        self.say(f"{work.name}: running here")

    def _report_end(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        self.say(f"{name} stopped by itself{f': {exc}' if exc else ''}; starting it again")

    async def _stop(self, name: str) -> None:
        running = self.running.pop(name, None)
        if running is None:
            return
        running.stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(running.task), STOP_GRACE)
        except TimeoutError:
            running.task.cancel()
        except Exception as exc:          # the work's own failure, already over
            self.say(f"{name} failed while stopping: {exc}")

    async def shutdown(self) -> None:
        for name in list(self.running):
            await self._stop(name)
        for work in self.works:
            with contextlib.suppress(ShipyardError):
                await asyncio.to_thread(self._release, work.name)

    def _release(self, work: str) -> None:
        with self.store.session() as s:
            dl.release(s, work, self.owner)
