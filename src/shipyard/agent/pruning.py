"""How long the agent remembers instances that ended, and their logs: bounded by age and by count.

Stopped and exited instances stay listed (and their logs kept) so `shipyard show`, `status` and the logs
of a recent failure still work; without a bound, state.json (rewritten on every change), the
supervisor's tables and logs/ would grow with every deploy for the life of the host. Pure choices
here, so they are checked as data.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from pathlib import Path

from shipyard.agent.state import TERMINAL, InstanceRecord

MAX_AGE = 24 * 3600.0       # seconds an ended instance stays listed
KEEP_PER_ENV = 20           # ended instances kept per (service, env), newest first: ~6 deploys of 3


def expired(records: Iterable[InstanceRecord], now: float, max_age: float, keep: int) -> list[str]:
    """Ids of ended instances to forget: older than `max_age`, or beyond the newest `keep` of their
    (service, env). Live instances are never chosen."""
    by_env: dict[tuple[str, str], list[InstanceRecord]] = {}
    for rec in records:
        if rec.state in TERMINAL:
            by_env.setdefault((rec.service, rec.env), []).append(rec)
    out: list[str] = []
    for ended in by_env.values():
        ended.sort(key=lambda r: r.stopped_at or 0.0, reverse=True)
        for i, rec in enumerate(ended):
            if i >= keep or (rec.stopped_at is not None and rec.stopped_at < now - max_age):
                out.append(rec.id)
    return out


def remove_log(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def orphan_logs(logs_dir: Path, known: set[str], max_age: float, now: float | None = None) -> list[Path]:
    """Instance logs in `logs_dir` of no known instance and untouched for `max_age` (left by agents
    that kept no bound, or by records lost with a corrupt state file)."""
    now = time.time() if now is None else now
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(logs_dir):
            if entry.name.endswith(".log") and entry.name[:-4] not in known:
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < now - max_age:
                        found.append(Path(entry.path))
    return found
