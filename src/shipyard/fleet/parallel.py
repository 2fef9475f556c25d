"""Run one coroutine per repo with bounded concurrency, and say what happened to each.

Multi-repo commands want three things the plain `asyncio.gather` does not give: at most `jobs` git
processes at a time (a laptop, a git server's connection limit), a live view of which repo is doing what,
and with `fail_fast` no new work started after the first failure (work already running finishes: killing
a push half-way would leave a repo in a state nobody recorded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shipyard.errors import ShipyardError

Status = Literal["ok", "failed", "nothing", "skipped"]
Listener = Callable[[str, str, str], None]      # (repo, state, detail): queued/running/ok/failed/...
DEFAULT_JOBS = 4


@dataclass
class RepoOutcome:
    """The result of one repo's work: ok, failed, nothing (nothing to do) or skipped (not started)."""

    status: Status
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def _notify(listener: Listener | None, repo: str, state: str, detail: str = "") -> None:
    if listener is not None:
        listener(repo, state, detail)


async def for_each(names: Sequence[str], work: Callable[[str], Awaitable[RepoOutcome]], *,
                   jobs: int = DEFAULT_JOBS, fail_fast: bool = False, listener: Listener | None = None,
                   not_started: str = "not started: an earlier repo failed (--fail-fast)",
                   ) -> dict[str, RepoOutcome]:
    """`work(name)` for every name, at most `jobs` at once; results in the order of `names`.

    A ShipyardError (a git failure, a refusal) from `work` is that repo's failure; any other exception is
    a bug and propagates after the running work is cancelled.
    """
    if jobs < 1:
        raise ValueError("jobs must be at least 1")
    gate = asyncio.Semaphore(jobs)
    stop = asyncio.Event()
    results: dict[str, RepoOutcome] = {}
    for name in names:
        _notify(listener, name, "queued")

    async def one(name: str) -> None:
        async with gate:
            if stop.is_set():
                results[name] = RepoOutcome("skipped", not_started)
                _notify(listener, name, "skipped", results[name].detail)
                return
            _notify(listener, name, "running")
            try:
                outcome = await work(name)
            except ShipyardError as err:
                outcome = RepoOutcome("failed", str(err))
            results[name] = outcome
            if outcome.status == "failed" and fail_fast:
                stop.set()
            _notify(listener, name, outcome.status, outcome.detail)

    tasks = [asyncio.ensure_future(one(name)) for name in names]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return {name: results[name] for name in names}


def summary_counts(results: dict[str, RepoOutcome]) -> dict[str, list[str]]:
    """Repo names grouped by status, for the closing line of every multi-repo command."""
    groups: dict[str, list[str]] = {"ok": [], "failed": [], "nothing": [], "skipped": []}
    for name, outcome in results.items():
        groups[outcome.status].append(name)
    return groups
