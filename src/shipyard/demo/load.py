"""Open-loop HTTP load generator for the demo, the benchmarks and the zero-downtime tests.

Why open-loop: a closed-loop client (send, wait, send) slows down when the server stalls, so a deploy
that blocks traffic for two seconds shows up as "fewer requests", not as failures. Here requests are
sent on a fixed schedule whatever happens to earlier ones, so a stall turns into timeouts and errors
with timestamps, which is what a user would have seen. In-flight requests are capped; a request that
would exceed the cap is counted as failed ("overload") rather than queued, so the schedule never bends.

Traffic is a mix: `keepalive_share` of the requests reuse pooled connections (like browsers and
service clients), the rest open a fresh connection with `Connection: close` (like health checkers
and short-lived scripts). Both paths matter when instances are drained and replaced.

A request fails on a non-2xx status, a connection error or a timeout. No retries: a retry would hide
exactly the failures a zero-downtime deploy must not have. CLI: `python -m shipyard.demo.load URL --json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

DEFAULT_MAX_CONCURRENCY = 256
MAX_FAILURES_KEPT = 200
# Below any sane server's idle timeout: the pool drops idle connections before the server does, so a
# request never races the server's close on a connection that looked alive.
POOL_IDLE_TIMEOUT = 3.0


@dataclass
class LoadResult:
    """What happened to the offered load; times are time.monotonic() seconds."""

    total: int = 0
    failed: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    failures: list[tuple[float, str]] = field(default_factory=list)  # first MAX_FAILURES_KEPT
    first_failure_at: float | None = None
    last_failure_at: float | None = None
    started_at: float = 0.0
    ended_at: float = 0.0
    offered_rps: float = 0.0

    @property
    def succeeded(self) -> int:
        return self.total - self.failed

    @property
    def duration(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def error_ratio(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (status codes become string keys)."""
        data = asdict(self)
        data["by_status"] = {str(k): v for k, v in sorted(self.by_status.items())}
        data["failures"] = [[round(t, 6), reason] for t, reason in self.failures]
        data.update(succeeded=self.succeeded, duration=round(self.duration, 3), error_ratio=round(self.error_ratio, 6))
        return data

    def summary(self) -> str:
        """One line for logs and the demo's output."""
        p50 = f"{self.p50_ms:.1f}" if self.p50_ms is not None else "-"
        p99 = f"{self.p99_ms:.1f}" if self.p99_ms is not None else "-"
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.total} requests in {self.duration:.1f}s, {self.failed} failed "
            f"(errors: {errors}), p50 {p50} ms, p99 {p99} ms"
        )


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0..100); None for no data."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def classify_error(exc: BaseException) -> str:
    """Short, stable name for a client-side failure (the keys of LoadResult.errors)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connect"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "payload"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "protocol"
    if isinstance(exc, aiohttp.ClientOSError | ConnectionError | OSError):
        return "reset"
    return type(exc).__name__


class Recorder:
    """Accumulates outcomes in the generator's loop; snapshot() may be called from any thread."""

    def __init__(self, offered_rps: float) -> None:
        self.total = 0
        self.failed = 0
        self.by_status: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.failures: list[tuple[float, str]] = []
        self.first_failure_at: float | None = None
        self.last_failure_at: float | None = None
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self.offered_rps = offered_rps
        self.in_flight = 0    # sent and not yet answered or failed (read by benchmarks at a crash)

    def _fail(self, now: float, reason: str) -> None:
        self.failed += 1
        if self.first_failure_at is None:
            self.first_failure_at = now
        self.last_failure_at = now
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append((now, reason))

    def response(self, status: int, latency_s: float) -> None:
        self.total += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.latencies.append(latency_s * 1000.0)
        if not 200 <= status < 300:
            self._fail(time.monotonic(), f"http {status}")

    def error(self, kind: str, detail: str = "") -> None:
        self.total += 1
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self._fail(time.monotonic(), f"{kind}: {detail}" if detail else kind)

    def snapshot(self) -> LoadResult:
        """Copy of the counts so far; latency percentiles cover completed HTTP responses only."""
        lat = sorted(list(self.latencies))
        return LoadResult(
            total=self.total,
            failed=self.failed,
            by_status=dict(self.by_status),
            errors=dict(self.errors),
            p50_ms=percentile(lat, 50),
            p99_ms=percentile(lat, 99),
            max_ms=lat[-1] if lat else None,
            failures=list(self.failures),
            first_failure_at=self.first_failure_at,
            last_failure_at=self.last_failure_at,
            started_at=self.started_at,
            ended_at=self.ended_at if self.ended_at is not None else time.monotonic(),
            offered_rps=self.offered_rps,
        )


def check_arguments(rps: float, duration: float | None, can_stop: bool, keepalive_share: float) -> None:
    """Reject settings that would never end or mean nothing, before any thread or socket exists."""
    if rps <= 0:
        raise ValueError("rps must be positive")
    if duration is None and not can_stop:
        raise ValueError("give a duration or a stop event, or the load would never end")
    if not 0.0 <= keepalive_share <= 1.0:
        raise ValueError("keepalive_share must be between 0 and 1")


async def _request(session: aiohttp.ClientSession, url: str, rec: Recorder, headers: dict[str, str]) -> None:
    t0 = time.monotonic()
    rec.in_flight += 1
    try:
        async with session.get(url, headers=headers, allow_redirects=False) as resp:
            await resp.read()
            status = resp.status
    except Exception as exc:
        rec.error(classify_error(exc), str(exc)[:200])
        return
    finally:
        rec.in_flight -= 1
    rec.response(status, time.monotonic() - t0)


async def run_load(
    url: str,
    rps: float,
    duration: float | None,
    *,
    stop: asyncio.Event | None = None,
    keepalive_share: float = 0.5,
    timeout: float = 5.0,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    recorder: Recorder | None = None,
    client_retries: bool = True,
) -> LoadResult:
    """Offer `rps` GET requests per second to `url` until `duration` passes or `stop` is set.

    Returns after the last request sent has finished or timed out (at most `timeout` later).
    Pass a `recorder` to watch progress from elsewhere (LoadRunner.snapshot does). aiohttp itself sends
    an idempotent request again, once, when the server drops the connection before answering (as
    browsers do on a reused connection); `client_retries=False` turns that off, so a request caught in
    a crash counts as failed.
    """
    check_arguments(rps, duration, stop is not None, keepalive_share)
    rec = recorder if recorder is not None else Recorder(rps)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    pooled = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_concurrency, keepalive_timeout=POOL_IDLE_TIMEOUT),
        timeout=client_timeout,
    )
    fresh = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_concurrency, force_close=True), timeout=client_timeout
    )
    if not client_retries:
        for session in (pooled, fresh):
            session._retry_connection = False  # no public switch; aiohttp's own test client does this
    keep_headers: dict[str, str] = {}
    close_headers = {"Connection": "close"}
    inflight: set[asyncio.Task[None]] = set()
    limit = math.ceil(duration * rps) if duration is not None else None
    credit = 0.0  # keep-alive share by accumulation: exact proportions, no randomness
    sent = 0
    rec.started_at = start = time.monotonic()
    # Tick at the request interval but never faster than 1 ms: at high rates several requests go out
    # per tick, still on schedule, without waking the loop thousands of times a second.
    tick = max(0.001, min(0.05, 1.0 / rps))
    try:
        while True:
            now = time.monotonic()
            if stop is not None and stop.is_set():
                break
            due = int((now - start) * rps) + 1
            if limit is not None:
                due = min(due, limit)
            while sent < due:
                sent += 1
                if len(inflight) >= max_concurrency:
                    rec.error("overload", f"{max_concurrency} requests in flight")
                    continue
                credit += keepalive_share
                if credit >= 1.0 - 1e-9:
                    credit -= 1.0
                    coro: Coroutine[Any, Any, None] = _request(pooled, url, rec, keep_headers)
                else:
                    coro = _request(fresh, url, rec, close_headers)
                task = asyncio.create_task(coro)
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if limit is not None and sent >= limit:
                break
            next_at = start + sent / rps
            await asyncio.sleep(min(tick, max(0.0, next_at - time.monotonic())) or 0.0005)
        # Each request carries its own total timeout, so this wait is bounded by `timeout`.
        if inflight:
            await asyncio.wait(set(inflight))
    finally:
        for task in inflight:
            task.cancel()
        await asyncio.gather(pooled.close(), fresh.close(), return_exceptions=True)
        rec.ended_at = time.monotonic()
    return rec.snapshot()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (a few % less CPU; the aiohttp client dominates the cost)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoadRunner:
    """run_load() in a background thread with its own event loop, for synchronous callers (CLI demo).

    The thread owns the loop, so load keeps its schedule while the caller blocks on subprocesses.
    """

    def __init__(self, url: str, rps: float, duration: float | None = None, **options: Any) -> None:
        check_arguments(rps, duration, True, options.get("keepalive_share", 0.5))
        self.url, self.rps, self.duration, self.options = url, rps, duration, options
        self._recorder = Recorder(rps)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._result: LoadResult | None = None
        self._error: BaseException | None = None

    def start(self) -> LoadRunner:
        """Start sending; returns once the generator's loop is running."""
        if self._thread is not None:
            raise RuntimeError("LoadRunner already started")
        self._thread = threading.Thread(target=self._main, name="shipyard-load", daemon=True)
        self._thread.start()
        self._ready.wait()
        return self

    def _main(self) -> None:
        loop = new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._result = loop.run_until_complete(self._run())
        except BaseException as exc:
            self._error = exc
        finally:
            self._ready.set()  # in case _run failed before signalling
            loop.close()

    async def _run(self) -> LoadResult:
        self._stop = asyncio.Event()
        self._ready.set()
        return await run_load(
            self.url, self.rps, self.duration, stop=self._stop, recorder=self._recorder, **self.options
        )

    def snapshot(self) -> LoadResult:
        """Counts so far, without stopping (safe from the caller's thread)."""
        return self._recorder.snapshot()

    @property
    def in_flight(self) -> int:
        """Requests sent and not finished right now."""
        return self._recorder.in_flight

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> LoadResult:
        """Stop sending, wait for in-flight requests, and return the result (re-raises its error)."""
        if self._thread is None:
            raise RuntimeError("LoadRunner was not started")
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None and not loop.is_closed():
            # RuntimeError: the loop closed between the check and the call, i.e. the run already ended.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ev.set)
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> LoadResult:
        """Wait for a run with a duration to end by itself; return its result (re-raises its error)."""
        if self._thread is None:
            raise RuntimeError("LoadRunner was not started")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("load generator did not finish in time")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def __enter__(self) -> LoadRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None and self._result is None and self._error is None:
            self.stop()


def main(argv: list[str] | None = None) -> int:
    """CLI for benchmarks: prints the result and the generator's own CPU use."""
    parser = argparse.ArgumentParser(prog="python -m shipyard.demo.load", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--keepalive-share", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    loop = new_event_loop()
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        result = loop.run_until_complete(
            run_load(args.url, args.rps, args.duration, keepalive_share=args.keepalive_share, timeout=args.timeout)
        )
    finally:
        loop.close()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    cpu_share = cpu / wall if wall else 0.0
    if args.json:
        out = result.to_dict()
        out.pop("failures")
        out.update(cpu_seconds=round(cpu, 3), cpu_share=round(cpu_share, 4), loop=type(loop).__module__)
        print(json.dumps(out))
    else:
        print(result.summary())
        print(f"generator CPU: {cpu:.2f}s over {wall:.2f}s ({cpu_share:.0%} of one core)")
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
