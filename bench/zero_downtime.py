"""Deploy new revisions of the example API under steady load, once per strategy, plus a failing release.

Real parts throughout: git repos with bare origins, the host agent supervising 3 app processes, the
built-in router, and an open-loop load generator offering a fixed rate (half keep-alive, half new
connections) for the whole deploy. A failed request is a non-2xx answer or a connection error.

    python bench/zero_downtime.py [--rps 500] [--repeat] [--json]

With --repeat each strategy (and the failing release) is deployed again and again, each time a new
commit, until it has seen at least --min-requests requests, so "zero failed" rests on enough traffic.
The JSON keeps its shape: counts are summed over the repeats, deploy_seconds is the mean per deploy,
state is the first one that was not "succeeded" (else "succeeded"), rollback_seconds the worst.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from shipyard.agent.daemon import stop_agent
from shipyard.cli.aio import run
from shipyard.cli.demo import free_port
from shipyard.cli.project import Project
from shipyard.demo.load import LoadRunner
from shipyard.demo.workspace import commit_version, create_workspace
from shipyard.engine import deployer
from shipyard.engine.settings import ServiceSettings
from shipyard.store import events as eq
from shipyard.strategies import AllAtOnce, BlueGreen, Canary, CanaryStep, Rolling, Strategy


def strategies(drain: float) -> dict[str, Strategy]:
    return {"all_at_once": AllAtOnce(), "rolling": Rolling(drain_timeout=drain),
            "blue_green": BlueGreen(drain_timeout=drain),
            "canary": Canary(steps=(CanaryStep(10, 2.0), CanaryStep(50, 2.0), CanaryStep(100, 0.0)),
                             drain_timeout=drain)}


def deploy_under_load(project: Project, settings: ServiceSettings, url: str, rps: int) -> tuple[Any, dict[str, Any]]:
    async def go() -> deployer.Outcome:
        async with project.agent(start=False) as agent:
            e = project.environment("api", "stg", agent)
            e.settings = settings
            return await deployer.deploy(e)

    load = LoadRunner(url, rps)
    load.start()
    t0 = time.monotonic()
    outcome = run(go())
    seconds = time.monotonic() - t0
    result = load.stop()
    return outcome, {"requests_total": result.total, "requests_failed": result.failed,
                     "deploy_seconds": round(seconds, 2), "state": str(outcome.state),
                     "errors": result.errors, "by_status": {str(k): v for k, v in result.by_status.items()}}


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several deploys of one strategy as one result of the same shape (see the module docstring)."""
    out: dict[str, Any] = {"requests_total": sum(r["requests_total"] for r in runs),
                           "requests_failed": sum(r["requests_failed"] for r in runs),
                           "deploy_seconds": round(sum(r["deploy_seconds"] for r in runs) / len(runs), 2),
                           "state": next((r["state"] for r in runs if r["state"] != "succeeded"), "succeeded"),
                           "errors": {}, "by_status": {}}
    for r in runs:
        for key in ("errors", "by_status"):
            for k, v in r[key].items():
                out[key][k] = out[key].get(k, 0) + v
    if "rollback_seconds" in runs[0]:
        seconds = [r["rollback_seconds"] for r in runs if r.get("rollback_seconds") is not None]
        out["rollback_seconds"] = max(seconds) if seconds else None
    return out


def rollback_seconds(project: Project, deployment_id: str) -> float | None:
    """First failed health check of the new revision → the router back on the old revision only."""
    with project.store.session() as s:
        events = eq.list_events(s, deployment_id=deployment_id, limit=None, newest_first=False)
        first_fail = next((ev.at for ev in events if ev.kind == "health.probe_failed"), None)
        back = [ev.at for ev in events if ev.kind == "traffic.changed"]
        done = next((ev.at for ev in events if ev.kind == "rollback.completed"), None)
    if first_fail is None:
        return None
    restored = [t for t in back if t >= first_fail]
    end = restored[-1] if restored else done
    return round((end - first_fail).total_seconds(), 3) if end else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rps", type=int, default=500, help="offered load during each deploy")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--repeat", action="store_true",
                    help="deploy each strategy again until it has seen --min-requests requests")
    ap.add_argument("--min-requests", type=int, default=2000, help="with --repeat (default 2000)")
    ap.add_argument("--keep", action="store_true", help="keep the workspace (for debugging)")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    port = free_port()
    ws = create_workspace(root, api_port=port, web_port=free_port())
    project = Project.load(ws.root / "shipyard.yaml")
    url = f"http://127.0.0.1:{port}/version"
    out: dict[str, Any] = {"offered_rps": args.rps, "strategies": {}}
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    try:
        project.agent()
        base = project.settings("api", "stg")
        base = replace(base, instances=3, health=base.health.model_copy(
            update={"interval": 0.2, "start_period": 5.0, "healthy_threshold": 2, "unhealthy_threshold": 2}))
        first, _ = deploy_under_load(project, replace(base, strategy=Rolling()), url, 1)
        log(f"v1: {first.state}")
        version = 1
        plan: list[tuple[str, Strategy, bool]] = [
            *((name, strat, False) for name, strat in strategies(base.drain_timeout).items()),
            ("failing_release", Rolling(), True)]
        for name, strat, failing in plan:
            runs: list[dict[str, Any]] = []
            while not runs or (args.repeat and sum(r["requests_total"] for r in runs) < args.min_requests):
                version += 1
                commit_version(ws, "api", f"{version}.0.0", health_fail=failing)
                outcome, r = deploy_under_load(project, replace(base, strategy=strat), url, args.rps)
                if failing:
                    r["rollback_seconds"] = rollback_seconds(project, outcome.deployment_id)
                runs.append(r)
                log(f"{name} #{len(runs)}: {outcome.state}, {r['requests_failed']}/{r['requests_total']} failed, "
                    f"{r['deploy_seconds']}s" + (f", rollback {r['rollback_seconds']}s" if failing else ""))
            out["strategies"][name] = merge(runs)
    finally:
        stop_agent(project.agent_dir, stop_instances=True)
        project.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
