"""The delivery worker: takes due outbox rows and sends them, with the retry policy people expect.

* At least once: a row is marked delivered only after the channel accepted it, so a crash in between
  re-sends it with the same idempotency key (receivers drop the duplicate). Rows are claimed before
  sending, so two workers (a deploy's drain and `notify worker`) do not both send one.
* Retries with exponential backoff and full jitter (so many failing rows do not retry in lockstep), a 429's
  Retry-After honoured as the minimum wait, other 4xx never retried, and a give-up deadline
  (`notifications.give_up_after` after the event) past which the row is failed with its last error.
* Pacing per destination (Slack: one message per second per webhook), and one channel's outage never
  delays another's messages: each channel's rows are sent in order by their own task.
* A notification failure never fails a deployment: nothing here raises past `run_once`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from shipyard.config.alerting import Notifications
from shipyard.errors import NotifyError
from shipyard.notify.channels import Channel, build_channel
from shipyard.notify.message import Message
from shipyard.store import Store
from shipyard.store import outbox as ob
from shipyard.store.models import OutboxEntry
from shipyard.store.sql import utcnow

log = logging.getLogger(__name__)
Resolve = Callable[[str], str]
_Item = tuple[int, dict[str, Any], int, datetime]
CLAIM_LEASE = 120.0  # seconds a claimed row is this worker's; a dead worker's rows are retried after it
DRAIN_POLL = 0.5     # seconds between looks at the outbox while a drain waits


def backoff(attempts: int, *, base: float = 1.0, cap: float = 60.0, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failures: full jitter on base * 2^attempts, capped."""
    ceiling = min(cap, base * (2 ** max(0, attempts)))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Worker:
    def __init__(self, store: Store, notifications: Notifications, resolve: Resolve | None = None, *,
                 base_delay: float = 1.0, max_delay: float = 10.0, batch: int = 200,
                 decorate: Callable[[Message], Message] | None = None) -> None:
        self.store, self.notifications, self.resolve = store, notifications, resolve
        self.decorate = decorate        # what is added at sending time (signed approval links)
        self.base_delay, self.max_delay, self.batch = base_delay, max_delay, batch
        self._channels: dict[str, Channel] = {}
        self._last_sent: dict[str, float] = {}
        self._claimed: set[int] = set()     # claimed by this worker, not yet delivered/retried/failed
        self.sent = 0
        self.failed = 0

    def channel(self, name: str) -> Channel | None:
        if name not in self._channels and name in self.notifications.channels:
            self._channels[name] = build_channel(name, self.notifications.channels[name], self.resolve)
        return self._channels.get(name)

    async def run_once(self) -> int:
        """Send every row due now; returns how many were handled (delivered, retried or failed)."""
        with self.store.session() as s:
            rows = [(r.id, r.channel, dict(r.payload), r.attempts, r.created_at) for r in ob.due(s, limit=self.batch)]
            mine = set(ob.claim(s, [r[0] for r in rows], lease=CLAIM_LEASE + len(rows)))
        self._claimed |= mine
        rows = [r for r in rows if r[0] in mine]
        by_channel: dict[str, list[_Item]] = defaultdict(list)
        for row_id, channel, payload, attempts, created in rows:
            by_channel[channel].append((row_id, payload, attempts, created))
        await asyncio.gather(*(self._send_channel(name, items) for name, items in by_channel.items()))
        return len(rows)

    async def _send_channel(self, name: str, items: list[_Item]) -> None:
        sender = self.channel(name)
        for pos, (row_id, payload, attempts, created) in enumerate(items):
            if sender is None:
                self._fail(row_id, f"channel {name!r} is not configured any more")
                continue
            await self._pace(sender)
            try:
                try:
                    message = Message.from_dict(payload)
                    await sender.send(self.decorate(message) if self.decorate else message)
                finally:
                    self._last_sent[sender.destination] = time.monotonic()
            except NotifyError as exc:
                delay = self._after_failure(row_id, exc, attempts, created)
                if delay is not None:   # keep order: the channel's later rows wait for this one
                    later = [i[0] for i in items[pos + 1:]]
                    with self.store.session() as s:
                        ob.defer(s, later, utcnow() + timedelta(seconds=delay))
                    self._claimed.difference_update(later)
                    return
                continue
            except Exception as exc:  # a bug in a channel must not stop the worker; record it
                log.exception("channel %s crashed", name)
                self._after_failure(row_id, NotifyError(f"{name}: {exc!r}", retryable=False), attempts, created)
                continue
            with self.store.session() as s:
                ob.mark_delivered(s, row_id)
            self._claimed.discard(row_id)
            self.sent += 1

    async def _pace(self, sender: Channel) -> None:
        """Wait until `pace` seconds after the previous send to this destination *ended*: its request
        arrived before that, so arrivals are at least `pace` apart however long each send took."""
        if sender.pace <= 0:
            return
        last = self._last_sent.get(sender.destination)
        if last is not None:
            wait = last + sender.pace - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    def _after_failure(self, row_id: int, exc: NotifyError, attempts: int, created: datetime) -> float | None:
        """Record the failure; the delay until the retry, or None when the row is failed for good."""
        if not exc.retryable:
            self._fail(row_id, str(exc))
            return None
        delay = backoff(attempts, base=self.base_delay, cap=self.max_delay)
        if exc.retry_after is not None:
            delay = max(delay if exc.retry_after == 0 else 0.0, exc.retry_after)
        now = utcnow()
        deadline = created + timedelta(seconds=self.notifications.give_up_after)
        if now + timedelta(seconds=delay) > deadline:
            self._fail(row_id, f"gave up after {attempts + 1} attempts: {exc}")
            return None
        with self.store.session() as s:
            ob.mark_retry(s, row_id, str(exc), delay, now=now)
        self._claimed.discard(row_id)
        return delay

    def _fail(self, row_id: int, error: str) -> None:
        with self.store.session() as s:
            ob.mark_failed(s, row_id, error)
        self._claimed.discard(row_id)
        self.failed += 1

    async def drain(self, timeout: float) -> bool:
        """Deliver until nothing is pending or `timeout` passes; True when the outbox is empty.

        The deadline is hard: pacing sleeps, backoff waits and sends in flight are cancelled when it
        comes, and the rows this worker claimed but did not finish are released at once, so `shipyard
        notify worker` (or the next drain) sends them without waiting out the claim. A send cut off in
        flight may have arrived: it is sent again with the same idempotency key (at least once).
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(loop.time() + max(0.0, timeout)):
                while True:
                    await self.run_once()
                    with self.store.session() as s:
                        nxt = ob.next_due_at(s)
                    if nxt is None:
                        return True
                    # Rows another worker claimed look due later: poll, so their delivery is noticed.
                    await asyncio.sleep(min(max((nxt - utcnow()).total_seconds(), 0.01), DRAIN_POLL))
        except TimeoutError:
            return False
        finally:
            self._release()

    def _release(self) -> None:
        """Make the rows claimed by an interrupted run due again now."""
        if self._claimed:
            with self.store.session() as s:
                ob.defer(s, sorted(self._claimed), utcnow())
            self._claimed.clear()

    async def run_forever(self, stop: asyncio.Event, *, idle_poll: float = 1.0) -> None:
        """Keep delivering until `stop` is set (new rows are noticed within `idle_poll` seconds)."""
        while not stop.is_set():
            await self.run_once()
            with self.store.session() as s:
                nxt = ob.next_due_at(s)
            wait = idle_poll if nxt is None else min(idle_poll, max(0.01, (nxt - utcnow()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)


def pending_count(store: Store) -> int:
    with store.session() as s:
        return ob.counts(s)[ob.PENDING]


__all__ = ["OutboxEntry", "Worker", "backoff", "pending_count"]
