"""The `retention` work of `shipyard serve`: prune at start and then every hour, batch by batch.

The prune itself is `shipyard.store.retention.prune` (what `shipyard prune` runs), in a worker thread;
between its transactions it looks at the stop event, so a daemon that stops (or loses the lease) leaves a
prune within one batch, and the next holder finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final

from shipyard.errors import ShipyardError
from shipyard.store import Store

log = logging.getLogger("shipyard.daemon")
INTERVAL: Final = 3600.0


class _Stopped(Exception):
    pass


def retention_work(store: Store, older_than: float, *, interval: float = INTERVAL,
                   say: Callable[[str], None] | None = None) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
    from shipyard.store.retention import prune

    async def run(stop: asyncio.Event) -> None:
        def checkpoint(_what: str) -> None:
            if stop.is_set():
                raise _Stopped

        while not stop.is_set():
            try:
                result = await asyncio.to_thread(prune, store, older_than, checkpoint=checkpoint)
                deleted = result.deleted
                if any(deleted.values()) and say is not None:
                    say(f"retention: pruned {deleted['deployments']} runs, {deleted['events']} events, "
                        f"{deleted['outbox']} notifications and {deleted['git_triggers']} GitOps triggers "
                        f"created before {result.cutoff:%Y-%m-%d}")
            except _Stopped:
                return
            except ShipyardError as err:        # the store down for a while: try again at the next round
                log.warning("retention: %s", err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    return run
