"""A small deployment history with known times and states, written through the store's own functions.

The expected stats and DORA figures for it are computed by hand in the tests that use it
(tests/unit/test_reports_stats.py, test_reports_dora.py); change this history and they must change too.

Period: [T0, T0 + 10 days). Runs (service/env, kind, created, duration, end state):

    o1  api/prod   deploy    T0-1d 10:00     1000s  succeeded  A0            (before the period)
    d1  api/prod   deploy    T0+0d 10:00      100s  succeeded  A1 (prev -)
    d2  api/prod   deploy    T0+1d 10:00      200s  failed     A2 (prev A1)
    d3  api/prod   deploy    T0+1d 12:00      300s  rolled_back by itself  A2 (prev A1)
    d4  api/prod   deploy    T0+2d 10:00      400s  succeeded, then rolled back by d5  A3 (prev A1)
    d5  api/prod   rollback  T0+2d 11:00       50s  succeeded  A1 (rollback_of d4)
    d6  api/prod   deploy    T0+3d 10:00      600s  succeeded  A4 (prev A1)
    d7  api/prod   deploy    T0+4d 10:00        -   cancelled
    w1  web/prod   deploy    T0+0d 09:00       60s  succeeded  W1
    w2  web/prod   deploy    T0+5d 09:00      120s  failed     W2 (prev W1)
    w3  web/stg    deploy    T0+5d 08:00       30s  succeeded  W2
    q1  api/prod   deploy    T0+10d           queued                        (at the period's end: outside)

Steps (deploy phase unless said): d1 prepare 50s ok, wait_healthy 50s ok; d2 prepare 200s failed;
d3 prepare 100s ok, wait_healthy 200s failed, rollback-phase route 10s ok; d4 prepare 100s ok,
wait_healthy 300s ok; w2 prepare 20s ok, wait_healthy 100s failed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shipyard.domain import StepState
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store import steps as sq

T0 = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = T0 + timedelta(days=10)
REVS = {name: (name.lower() * 20)[:40] for name in ("A0", "A1", "A2", "A3", "A4", "W1", "W2")}


def at(day: float, hour: int = 0) -> datetime:
    return T0 + timedelta(days=day, hours=hour)


RUNS: list[dict[str, Any]] = [
    dict(id="o1", service="api", env="prod", created=at(-1, 10), took=1000, state="succeeded", rev="A0"),
    dict(id="d1", service="api", env="prod", created=at(0, 10), took=100, state="succeeded", rev="A1"),
    dict(id="d2", service="api", env="prod", created=at(1, 10), took=200, state="failed", rev="A2", prev="A1"),
    dict(id="d3", service="api", env="prod", created=at(1, 12), took=300, state="rolled_back", rev="A2", prev="A1"),
    dict(id="d4", service="api", env="prod", created=at(2, 10), took=400, state="rolled_back", rev="A3", prev="A1"),
    dict(id="d5", service="api", env="prod", created=at(2, 11), took=50, state="succeeded", rev="A1", prev="A3",
         kind="rollback", rollback_of="d4"),
    dict(id="d6", service="api", env="prod", created=at(3, 10), took=600, state="succeeded", rev="A4", prev="A1"),
    dict(id="d7", service="api", env="prod", created=at(4, 10), took=None, state="cancelled", rev="A4", prev="A4"),
    dict(id="w1", service="web", env="prod", created=at(0, 9), took=60, state="succeeded", rev="W1"),
    dict(id="w2", service="web", env="prod", created=at(5, 9), took=120, state="failed", rev="W2", prev="W1"),
    dict(id="w3", service="web", env="stg", created=at(5, 8), took=30, state="succeeded", rev="W2"),
    dict(id="q1", service="api", env="prod", created=at(10), took=None, state="queued", rev="A4", prev="A4"),
]

# (deployment, phase, kind, start offset s, end offset s, state)
STEPS = [
    ("d1", "deploy", "prepare", 0, 50, "succeeded"), ("d1", "deploy", "wait_healthy", 50, 100, "succeeded"),
    ("d2", "deploy", "prepare", 0, 200, "failed"),
    ("d3", "deploy", "prepare", 0, 100, "succeeded"), ("d3", "deploy", "wait_healthy", 100, 300, "failed"),
    ("d3", "rollback", "route", 300, 310, "succeeded"),
    ("d4", "deploy", "prepare", 0, 100, "succeeded"), ("d4", "deploy", "wait_healthy", 100, 400, "succeeded"),
    ("w2", "deploy", "prepare", 0, 20, "succeeded"), ("w2", "deploy", "wait_healthy", 20, 120, "failed"),
]


def end_of(run_id: str) -> datetime:
    run = next(r for r in RUNS if r["id"] == run_id)
    return run["created"] + timedelta(seconds=run["took"] or 0)


def write_history(store: Store, revs: dict[str, str] | None = None) -> None:
    """Write RUNS and STEPS; `revs` maps the revision names to shas (default: REVS)."""
    revs = revs or REVS
    with store.session() as s:
        for r in RUNS:
            dq.create_deployment(s, deployment_id=r["id"], service=r["service"], env=r["env"], revision=revs[r["rev"]],
                                 previous_revision=revs[r["prev"]] if r.get("prev") else None, strategy="rolling",
                                 actor="test", kind=r.get("kind", "deploy"), state=r["state"],
                                 rollback_of=r.get("rollback_of"), now=r["created"])
            if r["took"] is not None:
                dq.update_deployment(s, r["id"], started_at=r["created"], finished_at=end_of(r["id"]),
                                     now=r["created"])
        starts = {r["id"]: r["created"] for r in RUNS}
        for idx, (dep, phase, kind, a, b, state) in enumerate(STEPS):
            row = sq.start_step(s, dep, phase, idx, kind, kind, now=starts[dep] + timedelta(seconds=a))
            sq.finish_step(s, row.id, StepState(state), now=starts[dep] + timedelta(seconds=b))
