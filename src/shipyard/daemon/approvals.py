"""The daemon's approvals work: expire requests past their timeout, and take over the wait of gated
deployments whose holder died (a CLI killed while waiting, a daemon SIGKILLed), running each once its
gate opens (engine.approvals, engine.deployer.resume_approved).

The runs themselves belong to the server's runner (its tasks are awaited on shutdown like any deploy the
API started); this work only finds them, once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from shipyard.engine.approvals import expire_due, orphaned
from shipyard.errors import ShipyardError
from shipyard.store import Store
from shipyard.store.owner import current_owner

INTERVAL = 1.0


def approvals_work(store: Store, resume: Callable[[str], Awaitable[None]], *, notifications: Any = None,
                   say: Callable[[str], None] = print, interval: float = INTERVAL,
                   owner: str | None = None) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    me = owner or current_owner()

    async def run(stop: asyncio.Event) -> None:
        told: str | None = None
        while not stop.is_set():
            try:
                await asyncio.to_thread(expire_due, store, notifications)
                for dep_id in await asyncio.to_thread(orphaned, store, me):
                    await resume(dep_id)
                told = None
            except ShipyardError as exc:            # the store away: say it once, try again
                if str(exc) != told:
                    say(f"approvals: {exc}")
                    told = str(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    return run
