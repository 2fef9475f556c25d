"""SIGKILL the agent and the router process under steady load, and count what it costs the traffic.

Real parts throughout: the demo's example API (3 instances) in git repos with bare origins, the keeper,
the router processes and the agent, and an open-loop load generator (half keep-alive, half new
connections) offering a fixed rate the whole time. The agent is killed 5 times (idle, and in the middle
of deploys driven like the CLI drives them), then the active router process 5 times. A failed request
is a non-2xx answer or a connection error, never retried by the client; a prober opening a fresh
connection every 10 ms measures how long connections were refused. After each kill exactly one revision
must serve.

    python bench/agent_crash.py [--rps 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from shipyard.agent import pidfile
from shipyard.agent.daemon import agent_status, stop_agent
from shipyard.agent.paths import AgentPaths
from shipyard.cli.aio import run
from shipyard.cli.demo import free_port
from shipyard.cli.project import Project
from shipyard.demo.load import LoadRunner
from shipyard.demo.workspace import Workspace, commit_version, create_workspace
from shipyard.engine import deployer
from shipyard.engine.settings import ServiceSettings
from shipyard.proxy import RouterClient, keeper_status
from shipyard.store import deployments as dq
from shipyard.store import steps as sq
from shipyard.strategies import Rolling

KILLS = 5


class Prober(threading.Thread):
    """A fresh TCP connection every `interval`: records when connecting was refused."""

    def __init__(self, port: int, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.port, self.interval = port, interval
        self.refused: list[float] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5):
                    pass
            except ConnectionRefusedError:
                self.refused.append(time.monotonic())
            except OSError:
                pass
            time.sleep(self.interval)

    def longest_refusal(self) -> float:
        """Longest run of refusals (gaps under 5 intervals count as one run), in seconds."""
        longest, start, last = 0.0, None, None
        for t in self.refused:
            if last is None or t - last > 5 * self.interval:
                start = t
            last = t
            longest = max(longest, last - (start or last) + self.interval)
        return round(longest, 3)


class Bench:
    def __init__(self, project: Project, ws: Workspace, base: ServiceSettings, port: int, log: Any) -> None:
        self.project, self.ws, self.base, self.port, self.log = project, ws, base, port, log
        self.state_dir = project.agent_dir
        self.one_revision = True
        self.version = 1

    def deploy(self) -> deployer.Outcome:
        async def go() -> deployer.Outcome:
            async with self.project.agent() as agent:
                e = self.project.environment("api", "stg", agent)
                e.settings = self.base
                return await deployer.deploy(e)
        return run(go())

    def agent_pid(self) -> int:
        return pidfile.holder(AgentPaths(self.state_dir)) or 0

    def wait_agent(self, old: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = agent_status(self.state_dir, timeout=2.0)
            if st is not None and st["pid"] != old:
                return
            time.sleep(0.05)
        raise RuntimeError("the keeper did not bring the agent back")

    def active_router(self) -> int:
        st = keeper_status(self.state_dir) or {}
        return next((r["pid"] for r in st.get("routers", []) if r["state"] == "active"), 0)

    def check_one_revision(self) -> None:
        """The router's weights name one revision, and what answers is that version."""
        async def routed() -> set[str]:
            async with RouterClient(self.state_dir) as client:
                stats = await client.router_stats("api", "stg")
            return {b["revision"] for b in stats["backends"] if b["weight"] > 0}
        revisions = asyncio.run(routed())
        answers = {httpx.get(f"http://127.0.0.1:{self.port}/version", timeout=5).json()["version"]
                   for _ in range(10)}
        ok = len(revisions) == 1 and answers == {f"{self.version}.0.0"}
        self.log(f"  serving {sorted(r[:8] for r in revisions)} answering {sorted(answers)}: "
                 f"{'ok' if ok else 'NOT ONE REVISION'}")
        self.one_revision &= ok

    def latest(self) -> str | None:
        with self.project.store.session() as s:
            dep = dq.list_deployments(s, service="api", env="stg", limit=1)
            return dep[0].id if dep else None

    def steps_done(self, after: str | None) -> int:
        """Steps finished by the newest deployment, if it is not `after` (the one before it)."""
        with self.project.store.session() as s:
            dep = dq.list_deployments(s, service="api", env="stg", limit=1)
            if not dep or dep[0].id == after:
                return 0
            return sum(1 for r in sq.list_steps(s, dep[0].id) if r.state == "succeeded")

    def kill_agent_mid_deploy(self) -> None:
        self.version += 1
        commit_version(self.ws, "api", f"{self.version}.0.0")
        outcome: list[deployer.Outcome] = []
        previous = self.latest()
        worker = threading.Thread(target=lambda: outcome.append(self.deploy()))
        worker.start()
        while self.steps_done(previous) < 3 and worker.is_alive():
            time.sleep(0.05)
        old = self.agent_pid()
        os.kill(old, signal.SIGKILL)
        self.log(f"  SIGKILL agent {old} mid-deploy")
        worker.join(300)
        state = str(outcome[0].state) if outcome else "no outcome"
        self.log(f"  deploy of {self.version}.0.0: {state}")
        if state != "succeeded":
            self.one_revision = False
        self.wait_agent(old)

    def kill_agent_idle(self) -> None:
        old = self.agent_pid()
        os.kill(old, signal.SIGKILL)
        self.log(f"  SIGKILL agent {old} (idle)")
        self.wait_agent(old)
        time.sleep(1.0)

    def standby_ready(self, timeout: float = 30.0) -> None:
        """Kill in the steady state: the keeper starts a warm standby a few seconds after a takeover."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = keeper_status(self.state_dir) or {}
            if any(r["state"] == "standby" for r in st.get("routers", [])):
                return
            time.sleep(0.05)

    def kill_router(self, load: LoadRunner) -> int:
        self.standby_ready()
        old = self.active_router()
        # Sampled on both sides of the kill: the load runs in its own thread, so a request may go out
        # between one sample and the signal; what the dead process held lies between the two.
        before = load.in_flight
        os.kill(old, signal.SIGKILL)
        in_flight = max(before, load.in_flight)
        t0 = time.monotonic()
        while self.active_router() in (0, old):
            time.sleep(0.005)
        self.log(f"  SIGKILL router {old}: {in_flight} requests in flight, replaced after "
                 f"{time.monotonic() - t0:.3f}s")
        time.sleep(2.0)
        return in_flight


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rps", type=int, default=200, help="offered load for the whole run")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--client-retries", action="store_true",
                    help="let the client re-send an idempotent request once when its connection drops (as "
                         "browsers and aiohttp do by default); off by default, so every casualty counts")
    ap.add_argument("--keep", action="store_true", help="keep the workspace (for debugging)")
    args = ap.parse_args()
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr))

    root = Path(tempfile.mkdtemp(prefix="shipyard-bench-crash-"))
    port = free_port()
    ws = create_workspace(root, api_port=port, web_port=free_port())
    project = Project.load(ws.root / "shipyard.yaml")
    out: dict[str, Any] = {}
    try:
        project.agent()
        base = project.settings("api", "stg")
        base = replace(base, instances=3, strategy=Rolling(drain_timeout=base.drain_timeout),
                       health=base.health.model_copy(update={"interval": 0.2, "start_period": 5.0,
                                                             "healthy_threshold": 2, "unhealthy_threshold": 2}))
        bench = Bench(project, ws, base, port, log)
        log(f"v1: {bench.deploy().state}")
        bench.check_one_revision()
        # By default no client retries: a request caught in a crash counts as failed, even where a browser
        # (or aiohttp by default) would have sent it again. Such casualties are the requests in flight in
        # the killed router, and those sent on keep-alive connections it held, before the client saw them
        # close.
        with LoadRunner(f"http://127.0.0.1:{port}/version", args.rps, client_retries=args.client_retries) as load:
            prober = Prober(port)
            prober.start()
            time.sleep(1.0)
            start = load.snapshot()
            time.sleep(10.0)                 # a baseline without kills, to read the numbers against
            before = load.snapshot()
            log(f"baseline (no kill, 10 s): {before.total - start.total} requests, "
                f"{before.failed - start.failed} failed")
            for i in range(KILLS):
                (bench.kill_agent_mid_deploy if i % 2 == 1 else bench.kill_agent_idle)()
                bench.check_one_revision()
            mid = load.snapshot()
            in_flight = 0
            for _ in range(KILLS):
                in_flight += bench.kill_router(load)
                bench.check_one_revision()
            after = load.snapshot()
            prober.stopping.set()
            prober.join(10)
            load.stop()
        out = {
            "agent_kill": {"kills": KILLS, "requests_total": mid.total - before.total,
                           "requests_failed": mid.failed - before.failed},
            "router_kill": {"kills": KILLS, "requests_total": after.total - mid.total,
                            "requests_failed": after.failed - mid.failed, "in_flight_at_kills": in_flight,
                            "max_refused_seconds": prober.longest_refusal()},
            "one_revision_after_each": bench.one_revision,
        }
        log(f"errors: {after.errors}")
    finally:
        stop_agent(project.agent_dir, stop_instances=True)
        project.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
