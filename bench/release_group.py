"""Release a group of 4 local services in 2 waves under HTTP load through their routers: a clean release,
then one where the last wave's member fails its health check and the whole group goes back.

Real parts throughout: four git repos with bare origins, the host agent supervising 2 app processes per
service, one built-in router per service, and an open-loop load generator per router offering a small fixed
rate for the whole release. A failed request is a non-2xx answer or a connection error.

    python bench/release_group.py [--rps 25] [--json]

Prints {"clean": R, "failing": R}, R = {"requests_total", "requests_failed", "release_seconds"}; the failing
one also has "abort_to_all_rolled_back_seconds": from the failing member's `deploy.failed` event to the
moment every member's router sent all its traffic to the previous revision again (the end of the last route
step of the members' rollbacks, read from the store), and "abort_to_group_end_seconds" (drains and
retirements of the abandoned sets done, the group run recorded rolled back).
Goals: 0 failed requests in both; back within 2 s of the failure while the previous sets are warm.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shipyard.agent.daemon import stop_agent
from shipyard.cli.aio import run
from shipyard.cli.demo import free_port
from shipyard.cli.project import Project
from shipyard.cli.release import group_plan
from shipyard.demo.group_workspace import SERVICES, commit, create_group_workspace
from shipyard.demo.load import LoadRunner
from shipyard.engine import groups
from shipyard.store import events as eq
from shipyard.store import groups as gq
from shipyard.store import steps as sq
from shipyard.store.owner import current_owner


def release(project: Project) -> groups.GroupOutcome:
    plan = group_plan(project, "platform", "stg", None)

    async def go() -> groups.GroupOutcome:
        async with project.agent() as agent:
            return await groups.release(project.store, plan, lambda s: project.environment(s, "stg", agent),
                                        actor="bench", owner=current_owner())
    return run(go())


def under_load(project: Project, urls: list[str], rps: float) -> tuple[groups.GroupOutcome, dict[str, Any]]:
    loads = [LoadRunner(url, rps).start() for url in urls]
    t0 = time.monotonic()
    outcome = release(project)
    seconds = time.monotonic() - t0
    results = [load.stop() for load in loads]
    errors: dict[str, int] = {}
    for r in results:
        for k, v in r.errors.items():
            errors[k] = errors.get(k, 0) + v
    return outcome, {"requests_total": sum(r.total for r in results),
                     "requests_failed": sum(r.failed for r in results), "release_seconds": round(seconds, 2),
                     "state": outcome.state, "errors": errors}


def abort_seconds(project: Project, outcome: groups.GroupOutcome) -> dict[str, float | None]:
    """From the failing member's `deploy.failed` to the moment the last member's router sent all traffic
    to its previous revision again (the end of the route step of its rollback, from the store), and to the
    group run's end (drains and retirements done too)."""
    failed = next(m for m in outcome.members if m["service"] == "user-web")["deployment_id"]
    with project.store.session(readonly=True) as s:
        row = gq.get_group(s, outcome.group_id)
        events = eq.list_events(s, deployment_id=failed, limit=None, newest_first=False)
        at = next((e.at for e in events if e.kind == "deploy.failed"), None)
        if row is None or row.finished_at is None or at is None:
            return {"back": None, "end": None}
        backs = []
        for m in outcome.members:
            undo = m["rollback_id"]      # the abort's traffic flip, else the member's own rollback phase
            steps = sq.list_steps(s, undo) if undo else sq.list_steps(s, m["deployment_id"], phase="rollback")
            ends = [r.ended_at for r in steps if r.kind == "route" or r.description.startswith("route all")]
            if ends and ends[-1] is not None:
                backs.append(ends[-1])
        return {"back": round((max(backs) - at).total_seconds(), 3) if backs else None,
                "end": round((row.finished_at - at).total_seconds(), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rps", type=float, default=25.0, help="requests per second offered to each router")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--keep", action="store_true", help="keep the workspace and its processes")
    args = ap.parse_args()
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))
    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-groups-"))
    ws = create_group_workspace(root, {s: free_port() for s in SERVICES}, instances=2)
    project = Project.load(ws.config_path)
    out: dict[str, Any] = {}
    try:
        log("baseline release (v1, no load)")
        first = release(project)
        assert first.state == "succeeded", first
        urls = [ws.url(s) for s in SERVICES]
        for svc in SERVICES:
            commit(ws, svc, "2.0.0")
        log("clean release (v2) under load")
        _, out["clean"] = under_load(project, urls, args.rps)
        for svc in SERVICES[:3]:
            commit(ws, svc, "3.0.0")
        commit(ws, "user-web", "3.0.0", health_fail=True)
        log("failing release (v3, user-web unhealthy) under load")
        failing, out["failing"] = under_load(project, urls, args.rps)
        seconds = abort_seconds(project, failing)
        out["failing"]["abort_to_all_rolled_back_seconds"] = seconds["back"]
        out["failing"]["abort_to_group_end_seconds"] = seconds["end"]
        out["failing"]["members"] = {m["service"]: m["state"] for m in failing.members}
    finally:
        if not args.keep:
            stop_agent(project.agent_dir, stop_instances=True)
            project.close()
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
