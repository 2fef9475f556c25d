"""Two works of `shipyard serve` that keep the history small to read: `aggregates` folds closed days ahead
(`shipyard.store.folding`, every minute: a day changed since its fold is folded again soon) and
`retention` prunes (`shipyard.store.retention.prune`, what `shipyard prune` runs, at start and then every
hour, batch by batch).

Each job runs in a worker thread; between its transactions it looks at the stop event, so a daemon that
stops (or loses the lease) leaves a job within one transaction, and the next holder finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from shipyard.errors import ShipyardError
from shipyard.store import Store

log = logging.getLogger("shipyard.daemon")
INTERVAL: Final = 3600.0
FOLD_INTERVAL: Final = 60.0

R = TypeVar("R")
WorkFn = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class _Stopped(Exception):
    pass


def _periodic(name: str, job: Callable[[Callable[[str], None]], R], interval: float,
              told: Callable[[R], str | None], say: Callable[[str], None] | None) -> WorkFn:
    async def run(stop: asyncio.Event) -> None:
        def checkpoint(_what: str) -> None:
            if stop.is_set():
                raise _Stopped

        while not stop.is_set():
            try:
                line = told(await asyncio.to_thread(job, checkpoint))
                if line and say is not None:
                    say(f"{name}: {line}")
            except _Stopped:
                return
            except ShipyardError as err:        # the store down for a while: try again at the next round
                log.warning("%s: %s", name, err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    return run


def retention_work(store: Store, older_than: float, *, interval: float = INTERVAL,
                   say: Callable[[str], None] | None = None) -> WorkFn:
    from shipyard.store.retention import PruneResult, prune

    def told(result: PruneResult) -> str | None:
        deleted = result.deleted
        if not any(deleted.values()):
            return None
        return (f"pruned {deleted['deployments']} runs, {deleted['events']} events, {deleted['outbox']} "
                f"notifications and {deleted['git_triggers']} GitOps triggers created before {result.cutoff:%Y-%m-%d}")

    return _periodic("retention", lambda cp: prune(store, older_than, checkpoint=cp), interval, told, say)


def aggregates_work(store: Store, *, interval: float = FOLD_INTERVAL,
                    say: Callable[[str], None] | None = None) -> WorkFn:
    from shipyard.store.folding import FoldResult, fold_closed

    def told(result: FoldResult) -> str | None:
        if not result.folded and not result.refolded:
            return None
        until = f"{result.folded_before:%Y-%m-%d}" if result.folded_before else "-"
        return f"folded {result.folded} closed days and {result.refolded} changed ones (history read from " \
               f"aggregates before {until})"

    return _periodic("aggregates", lambda cp: fold_closed(store, checkpoint=cp), interval, told, say)
