"""The bad-canary scenario: a canary release starts failing after traffic shifts, an alarm fires, the
engine rolls back, and people are told. Shared by bench/alarm_rollback.py and the end-to-end test.

Real parts throughout: git repos, the host agent with the example API's processes, the built-in router,
open-loop load through it, the router provider reading the agent's counters per revision, and (optionally)
notifications delivered to real receivers through the outbox. The error switch is the example app's
`POST /admin/error-rate`, sent to the new instances right after the first canary traffic shift, so
"error onset" is a measured moment, not a guess.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from shipyard.cli.aio import run
from shipyard.cli.project import Project
from shipyard.config.alerting import Alarm, Notifications
from shipyard.demo.load import LoadRunner
from shipyard.demo.workspace import commit_version, create_workspace
from shipyard.engine import deployer
from shipyard.notify.worker import Worker
from shipyard.strategies import Canary, CanaryStep, Rolling
from shipyard.testing.receivers import free_port

HIGH_5XX = Alarm(metric="http_5xx_ratio", statistic="Average", period=1.0, evaluation_periods=3,
                 datapoints_to_alarm=2, comparison=">", threshold=0.10, treat_missing_data="notBreaching")


@dataclass
class Timeline:
    """Monotonic times of what the listener saw, and the load's failure count at the flip back."""

    new_addresses: list[str] = field(default_factory=list)
    onset: float | None = None
    alarm: float | None = None
    back: float | None = None
    failed_at_back: int | None = None
    kinds: list[str] = field(default_factory=list)
    switch_error: str | None = None


def _switch(addresses: list[str], rate: float, tl: Timeline) -> None:
    try:
        for address in addresses:
            httpx.post(f"http://{address}/admin/error-rate", content=str(rate), timeout=5).raise_for_status()
        tl.onset = time.monotonic()
    except httpx.HTTPError as exc:
        tl.switch_error = str(exc)


def run_bad_canary(root: Path, *, error_rate: float = 0.3, rps: float = 100.0, pause: float = 30.0,
                   notifications: Notifications | None = None, after: float = 3.0) -> dict[str, Any]:
    """Deploy v1, then a canary v2 whose instances start failing `error_rate` of requests; returns figures."""
    port = free_port()
    ws = create_workspace(root, api_port=port, web_port=free_port())
    project = Project.load(ws.root / "shipyard.yaml")
    url = f"http://127.0.0.1:{port}/version"
    try:
        project.agent()
        base = project.settings("api", "stg")
        base = replace(base, instances=2, health=base.health.model_copy(
            update={"interval": 0.2, "start_period": 5.0, "healthy_threshold": 2, "unhealthy_threshold": 2}))

        async def deploy(settings: Any, listener: Any = None) -> deployer.Outcome:
            async with project.agent(start=False) as agent:
                e = project.environment("api", "stg", agent, listener=listener)
                e.settings, e.notifications = settings, notifications
                return await deployer.deploy(e)

        first = run(deploy(replace(base, strategy=Rolling())))
        if str(first.state) != "succeeded":
            raise RuntimeError(f"v1 did not deploy: {first.reason}")
        commit_version(ws, "api", "2.0.0")
        tl = Timeline()
        load = LoadRunner(url, rps)

        def listen(kind: str, data: dict[str, Any]) -> None:
            now = time.monotonic()
            tl.kinds.append(kind)
            if kind == "instance.started":
                tl.new_addresses.append(str(data.get("address")))
            elif kind == "traffic.changed" and tl.new_addresses and tl.onset is None and tl.switch_error is None:
                threading.Thread(target=_switch, args=(list(tl.new_addresses), error_rate, tl), daemon=True).start()
            elif kind == "alarm.alarm" and tl.alarm is None:
                tl.alarm = now
            elif kind == "traffic.changed" and tl.alarm is not None and tl.back is None:
                tl.back = now
                tl.failed_at_back = load.snapshot().failed

        canary = replace(base, strategy=Canary(steps=(CanaryStep(50, pause),), drain_timeout=2.0),
                         alarms={"high_5xx": HIGH_5XX})
        load.start()
        t0 = time.monotonic()
        outcome = run(deploy(canary, listen))
        took = time.monotonic() - t0
        time.sleep(after)
        result = load.stop()
        delivered = None
        if notifications is not None:
            worker = Worker(project.store, notifications)
            run(worker.drain(30))
            delivered = {"sent": worker.sent, "failed": worker.failed}
        return {
            "detection_seconds": round(tl.alarm - tl.onset, 3) if tl.alarm and tl.onset else None,
            "rollback_seconds": round(tl.back - tl.alarm, 3) if tl.back and tl.alarm else None,
            "requests_failed_after_rollback": (result.failed - tl.failed_at_back
                                               if tl.failed_at_back is not None else None),
            "state": str(outcome.state), "reason": outcome.reason, "deployment_id": outcome.deployment_id,
            "deploy_seconds": round(took, 2), "error_rate": error_rate, "offered_rps": rps,
            "requests_total": result.total, "requests_failed": result.failed,
            "alarm": {"metric": HIGH_5XX.metric, "period": HIGH_5XX.period, "m_of_n": list(HIGH_5XX.m_of_n),
                      "threshold": HIGH_5XX.threshold},
            "switch_error": tl.switch_error, "notifications": delivered,
        }
    finally:
        from shipyard.agent.daemon import stop_agent

        stop_agent(project.agent_dir, stop_instances=True)
        project.close()
