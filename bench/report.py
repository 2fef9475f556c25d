"""Stats, DORA and the Markdown report over a large synthetic history, on SQLite (and PostgreSQL).

What is generated: N deployments spread evenly over the 365 days before a fixed end, across 5 services
and 3 environments (15 pairs); each pair's runs are a chain (previous_revision = the revision before).
States, by a seeded random draw: 80% succeeded, 8% failed, 7% rolled back by themselves, 3% cancelled, and
2% are kind='rollback' runs (succeeded) that undo the pair's previous deploy, which is then rolled_back
(rollback_of set), as `shipyard rollback` records it. Durations 30-600 s. Each run that was not cancelled
has steps with times: prepare, wait_healthy, route; in a failed (or self-rolled-back) run wait_healthy failed and
route never ran. Rows go in with bulk
INSERTs (not the store's one-row functions: a million rows one by one would take most of an hour).
No events and no git repositories: lead time needs git and is not part of these figures.

Measured, each the best of 3 runs through the public async functions of shipyard.reports with a Store:
stats over 30 days, DORA over 90 days, the Markdown report over 30 days (which also computes the previous
30 days' stats and DORA for the trends).

    python bench/report.py [--deployments 100000] [--no-postgres] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from shipyard.reports import parse_period, report_markdown, stats
from shipyard.reports.dora import dora
from shipyard.store import Store
from shipyard.store.models import Deployment, StepRecord

END = datetime(2026, 12, 1, tzinfo=UTC)
SERVICES = ["api", "web", "admin", "ws", "worker"]
ENVS = ["dev", "stg", "prod"]
BATCH = 5000


def generate(n: int, seed: int = 7) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(seed)
    span = timedelta(days=365) / max(n, 1)
    deps: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for i in range(n):
        service, env = SERVICES[i % len(SERVICES)], ENVS[(i // len(SERVICES)) % len(ENVS)]
        created = END - timedelta(days=365) + span * i
        took = rng.uniform(30, 600)
        draw = rng.random()
        prev = last.get((service, env))
        kind, state, rollback_of = "deploy", "succeeded", None
        if draw < 0.02 and prev is not None and prev["state"] == "succeeded" and prev["kind"] == "deploy":
            kind, rollback_of = "rollback", prev["id"]
            prev["state"] = "rolled_back"
        elif draw < 0.10:
            state = "failed"
        elif draw < 0.17:
            state = "rolled_back"
        elif draw < 0.20:
            state = "cancelled"
        rev = f"{i:040x}"
        row = {"id": f"deploy-{i:08d}", "service": service, "env": env, "kind": kind, "revision": rev, "ref": "main",
               "previous_revision": prev["revision"] if prev else None, "strategy": "rolling", "state": state,
               "reason": None, "actor": "bench", "owner": None, "plan": [], "context": None, "created_at": created,
               "started_at": None if state == "cancelled" else created,
               "finished_at": created if state == "cancelled" else created + timedelta(seconds=took),
               "updated_at": created, "rollback_of": rollback_of}
        deps.append(row)
        if state != "cancelled":
            t = created
            for idx, (step, share) in enumerate((("prepare", 0.5), ("wait_healthy", 0.4), ("route", 0.1))):
                end = t + timedelta(seconds=took * share)
                failed = step == "wait_healthy" and state != "succeeded"
                steps.append({"deployment_id": row["id"], "phase": "deploy", "idx": idx, "kind": step,
                              "description": step, "state": "failed" if failed else "succeeded",
                              "started_at": t, "ended_at": end, "detail": None, "output": None, "error": None})
                t = end
                if failed:
                    break
        if state != "cancelled":
            last[(service, env)] = row
    return deps, steps


def fill(store: Store, deps: list[dict[str, Any]], steps: list[dict[str, Any]]) -> None:
    with store.session() as s:
        for table, rows in ((Deployment, deps), (StepRecord, steps)):
            for start in range(0, len(rows), BATCH):
                s.execute(insert(table), rows[start:start + BATCH])


async def _best(make: Any, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        await make()
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


async def measure(store: Store) -> dict[str, float]:
    p30, p90 = parse_period("30d", now=END), parse_period("90d", now=END)
    return {"stats_30d_ms": await _best(lambda: stats(store, p30)),
            "dora_90d_ms": await _best(lambda: dora(store, p90)),
            "report_md_ms": await _best(lambda: report_markdown(store, p30))}


def run_on(url: str, deps: list[dict[str, Any]], steps: list[dict[str, Any]]) -> dict[str, Any]:
    with Store.open(url) as store:
        t0 = time.perf_counter()
        fill(store, deps, steps)
        filled = time.perf_counter() - t0
        if store.engine.dialect.name == "postgresql":
            with store.engine.begin() as conn:      # planner statistics, as autovacuum would gather them
                conn.exec_driver_sql("ANALYZE")
        figures = asyncio.run(measure(store))
    return {**figures, "fill_seconds": round(filled, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployments", type=int, default=100_000)
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    deps, steps = generate(args.deployments)
    out: dict[str, Any] = {"deployments": len(deps), "steps": len(steps)}
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-report-") as tmp:
        out["sqlite"] = run_on(f"sqlite:///{Path(tmp) / 'state.db'}", deps, steps)
    if not args.no_postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        import pg  # the test suite's throwaway PostgreSQL cluster (or SHIPYARD_TEST_PG_URL)

        try:
            with pg.postgres_server() as server, pg.scratch_database(server) as url:
                out["postgresql"] = run_on(url, deps, steps)
        except pg.PostgresUnavailable as err:
            out["postgresql"] = {"skipped": str(err)}
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")


if __name__ == "__main__":
    main()
