"""The HTTP API over a large history, on SQLite and PostgreSQL, through a real `shipyard serve` process.

The history is bench/report.py's (N deployments over 365 days, 5 services x 3 envs, steps for each run
that was not cancelled, no events, no git): see its docstring. Then, per database, `shipyard serve` runs
as a user runs it and one keep-alive client measures, sequentially:
- after WARMUP untimed requests of each kind (a server that has just started fills its connection pool and
  SQLAlchemy's statement cache on its first requests; the goal is about a running one):
- history_p99_ms: GET /api/v1/deployments (limit 50) with a random service/env filter or none, and every
  fourth request the next page through its cursor (deep pages included);
- one_deployment_p99_ms: GET /api/v1/deployments/{id} of random ids (with their steps and events);
- stats_30d_ms, dora_90d_ms, report_md_ms: best of 3 of /api/v1/stats?period=30d, /dora?period=90d and
  /reports?period=30d&format=md. The history ends at a fixed date, so the periods are asked with since/until,
  on whole days and (`*_rolling_ms`) shifted by 13 hours, as a `--period 30d` from now is: its partial first
  and last days are read from raw rows.
Those three are measured twice, side by side: first with the daily aggregates not yet folded (`raw_*`, every
run of the window read; a serve without its `aggregates` work), then after `fold_closed` (what that work does
at start; `fold_seconds`) with the closed days read from `daily_aggregates`; `*_speedup` is the ratio.
Then prune_90d_seconds: `shipyard.store.retention.prune` (what the daemon's `retention` work and `shipyard
prune` run) of everything created more than 90 days before the history's end, with the server stopped.

    python bench/api.py [--deployments 100000] [--requests 300] [--no-postgres | --no-sqlite] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from report import END, ENVS, SERVICES, fill, generate  # noqa: E402

from shipyard.store import Store  # noqa: E402
from shipyard.store import tokens as tq  # noqa: E402
from shipyard.store.folding import fold_closed  # noqa: E402
from shipyard.store.retention import prune  # noqa: E402
from shipyard.testing.cli import cli_argv  # noqa: E402
from shipyard.testing.processes import stop_process  # noqa: E402
from shipyard.testing.receivers import free_port  # noqa: E402
from shipyard.testing.wait import wait_until  # noqa: E402


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[max(0, int(len(ordered) * 0.99) - 1)], 2)


def window(days: int, *, shift: timedelta = timedelta(0)) -> dict[str, str]:
    return {"since": (END - timedelta(days=days) - shift).isoformat(), "until": (END - shift).isoformat()}


WARMUP = 30                         # requests of each kind before the timed ones
ROLLING = timedelta(hours=13)       # a window that starts and ends mid-day, as `--period 30d` from now does


def _timed(client: httpx.Client, path: str, **params: Any) -> tuple[float, httpx.Response]:
    t0 = time.perf_counter()
    res = client.get(path, params=params)
    took = (time.perf_counter() - t0) * 1000
    assert res.status_code == 200, (path, params, res.status_code, res.text[:300])
    return took, res


def reports(url: str, token: str, prefix: str = "") -> dict[str, Any]:
    """Best of 3 of stats (30 days), DORA (90 days) and the Markdown report, on whole days and rolling."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as client:
        def best(path: str, **params: Any) -> float:
            return round(min(_timed(client, path, **params)[0] for _ in range(3)), 1)

        return {f"{prefix}stats_30d_ms": best("/api/v1/stats", **window(30)),
                f"{prefix}dora_90d_ms": best("/api/v1/dora", **window(90)),
                f"{prefix}report_md_ms": best("/api/v1/reports", format="md", **window(30)),
                f"{prefix}stats_30d_rolling_ms": best("/api/v1/stats", **window(30, shift=ROLLING)),
                f"{prefix}dora_90d_rolling_ms": best("/api/v1/dora", **window(90, shift=ROLLING))}


def measure(url: str, token: str, ids: list[str], requests: int) -> dict[str, Any]:
    rng = random.Random(11)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        def timed(path: str, **params: Any) -> tuple[float, httpx.Response]:
            return _timed(client, path, **params)

        for _ in range(WARMUP):     # untimed: the first requests of a fresh server fill its pools and caches
            timed("/api/v1/deployments", limit=50)
            timed(f"/api/v1/deployments/{rng.choice(ids)}")
        history, cursor = [], None
        for n in range(requests):
            params: dict[str, Any] = {"limit": 50}
            if n % 4 and cursor:
                params["cursor"] = cursor
            elif rng.random() < 0.7:
                params.update(service=rng.choice(SERVICES), env=rng.choice(ENVS))
            took, res = timed("/api/v1/deployments", **params)
            history.append(took)
            cursor = res.json()["next_cursor"]
        one = [timed(f"/api/v1/deployments/{rng.choice(ids)}")[0] for _ in range(requests)]
    return {"history_p99_ms": p99(history), "history_median_ms": round(statistics.median(history), 2),
            "one_deployment_p99_ms": p99(one), "one_deployment_median_ms": round(statistics.median(one), 2),
            **reports(url, token)}


@contextlib.contextmanager
def serving(root: Path, *, aggregates: bool) -> Iterator[str]:
    """`shipyard serve` on the project in `root` (with or without its `aggregates` work) until the block ends."""
    config = root / "shipyard.yaml"
    text = config.read_text(encoding="utf-8")
    serve = f"serve: {{outbox: false, aggregates: {str(aggregates).lower()}}}"
    config.write_text(re.sub(r"serve: \{.*\}", serve, text), encoding="utf-8")
    with serve_process(root) as base:
        yield base


@contextlib.contextmanager
def serve_process(root: Path) -> Iterator[str]:
    """A real `shipyard serve` process on the project in `root`, as a user starts it, until the block ends;
    yields its base URL once /healthz answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    proc = subprocess.Popen(cli_argv("serve", "--listen", f"127.0.0.1:{port}"), cwd=root, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_until(up, 120, "shipyard serve")
        yield base
    finally:
        stop_process(proc, timeout=30)


def run_on(url: str, deps: list[dict[str, Any]], steps: list[dict[str, Any]], requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="shipyard-bench-api-") as tmp:
        root = Path(tmp)
        (root / "shipyard.yaml").write_text(f'project: bench\nstate: "{url}"\nenvironments:\n'
                                            + "".join(f"  {e}: {{branch: {e}}}\n" for e in ENVS)
                                            + "serve: {outbox: false}\n")
        with Store.open(url) as store:
            t0 = time.perf_counter()
            fill(store, deps, steps)
            filled = time.perf_counter() - t0
            if store.engine.dialect.name == "postgresql":
                with store.engine.begin() as conn:
                    conn.exec_driver_sql("ANALYZE")
            with store.session() as s:
                _, token = tq.create_token(s, name="bench", scopes=["read"], envs=None, actor="bench")
        with serving(root, aggregates=False) as base:     # every figure from the raw rows, for the ratio
            raw = reports(base, token, "raw_")
        with Store.open(url) as store:                    # what the daemon's `aggregates` work does at start
            t0 = time.perf_counter()
            folded = fold_closed(store, now=END)
            raw["fold_seconds"], raw["folded_days"] = round(time.perf_counter() - t0, 1), folded.folded
        with serving(root, aggregates=True) as base:
            figures = measure(base, token, [d["id"] for d in deps], requests)
        figures.update(raw)
        figures["stats_30d_speedup"] = round(raw["raw_stats_30d_ms"] / max(figures["stats_30d_ms"], 0.1), 1)
        figures["dora_90d_speedup"] = round(raw["raw_dora_90d_ms"] / max(figures["dora_90d_ms"], 0.1), 1)
        with Store.open(url) as store:
            t0 = time.perf_counter()
            pruned = prune(store, 90 * 86400.0, now=END)
            figures["prune_90d_seconds"] = round(time.perf_counter() - t0, 1)
            figures["pruned_deployments"] = pruned.deleted["deployments"]
    return {**figures, "fill_seconds": round(filled, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deployments", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only")
    ap.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    deps, steps = generate(args.deployments)
    out: dict[str, Any] = {"deployments": len(deps), "steps": len(steps)}
    if not args.no_sqlite:
        with tempfile.TemporaryDirectory(prefix="shipyard-bench-api-db-") as tmp:
            out["sqlite"] = run_on(f"sqlite:///{Path(tmp) / 'state.db'}", deps, steps, args.requests)
    if not args.no_postgres:
        import pg  # the test suite's throwaway PostgreSQL cluster (or SHIPYARD_TEST_PG_URL)

        try:
            with pg.postgres_server() as server, pg.scratch_database(server) as url:
                out["postgresql"] = run_on(url, deps, steps, args.requests)
        except pg.PostgresUnavailable as err:
            out["postgresql"] = {"skipped": str(err)}
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))


if __name__ == "__main__":
    main()
