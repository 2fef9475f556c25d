"""Analyze steps with alarms and the canary judge, against FakeTarget/FakeRouter and a scripted provider."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from shipyard.config.alerting import Alarm, Notifications
from shipyard.config.checks import ExecCheck
from shipyard.config.deploy import CanaryAnalysis
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.settings import ServiceSettings
from shipyard.monitoring.base import Sample, Window
from shipyard.releases.git import GitSource
from shipyard.releases.store import ReleaseStore
from shipyard.store import Store
from shipyard.store import events as eq
from shipyard.store import outbox as ob
from shipyard.store import steps as sq
from shipyard.strategies import Canary, CanaryStep, Rolling
from shipyard.testing import FakeRouter, FakeTarget


class ScriptedMetrics:
    """Per-revision values: `bad` revisions report `bad_value`, every other one `good_value`, each second."""

    def __init__(self, bad: set[str] | None = None, bad_value: float = 0.5, good_value: float = 0.0) -> None:
        self.bad, self.bad_value, self.good_value = bad or set(), bad_value, good_value
        self.queries: list[tuple[str, dict[str, str] | None]] = []

    async def query(self, metric: str, window: Window, *, labels: dict[str, str] | None = None) -> list[Sample]:
        self.queries.append((metric, labels))
        rev = (labels or {}).get("revision", "")
        value = self.bad_value if rev in self.bad else self.good_value
        if metric == "request_count":
            value = 100.0
        t, out = window.start, []
        now = time.time()
        while t < min(window.end, now):
            out.append(Sample(t, value + (0.001 * (int(t * 10) % 3)), {"revision": rev}))
            t += 0.25
        return out


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[deployer.Environment]:
    r = tmp_path / "repo"
    r.mkdir()
    git(r, "init", "-q", "-b", "stg")
    for v in ("1", "2"):
        (r / "VERSION").write_text(v)
        git(r, "add", "-A")
        git(r, "commit", "-qm", f"v{v}")
        git(r, "tag", f"v{v}")
    store = Store.open(f"sqlite:///{tmp_path / 'state.db'}")
    check = ExecCheck(type="exec", command="true", interval=0.02, timeout=2, healthy_threshold=1,
                      unhealthy_threshold=1, start_period=0, deadline=10)
    settings = ServiceSettings(
        service="api", env="stg", branch="stg", source=GitSource("api", None, r, tmp_path / "mirrors"),
        build=None, build_timeout=30, run="python app.py", migrate=None, environ={}, instances=2, stop_timeout=1,
        listen="127.0.0.1:1", strategy=Rolling(drain_timeout=0), drain_timeout=0, ws_drain_timeout=0, bake=0,
        keep_previous=300, step_timeout=30, keep_releases=5, health=check, health_wait=10, hooks={})
    notifications = Notifications.model_validate({
        "channels": {"alerts": {"type": "webhook", "url": "http://127.0.0.1:9/x"}},
        "routes": [{"events": ["alarm.alarm", "rollback.*"], "to": ["alerts"]}]})
    e = deployer.Environment(settings=settings, store=store, target=FakeTarget("api", "stg"), router=FakeRouter(),
                             releases=ReleaseStore(tmp_path / "releases"), actor="tester",
                             notifications=notifications)
    e.repo = r  # type: ignore[attr-defined]
    yield e
    store.close()


HIGH_5XX = Alarm(metric="http_5xx_ratio", statistic="Average", period=0.5, evaluation_periods=2,
                 datapoints_to_alarm=2, comparison=">", threshold=0.1, treat_missing_data="notBreaching")


async def test_alarm_in_bake_rolls_back_with_the_alarm_and_values(env: deployer.Environment) -> None:
    await deployer.deploy(env, "v1")
    v2 = git(env.repo, "rev-parse", "v2")  # type: ignore[attr-defined]
    env.settings = replace(env.settings, bake=10, alarms={"high_5xx": HIGH_5XX})
    env.metrics = ScriptedMetrics(bad={v2})
    t0 = time.monotonic()
    outcome = await deployer.deploy(env, "v2")
    assert time.monotonic() - t0 < 8            # rolled back on the alarm, long before the bake ended
    assert outcome.state == DeployState.ROLLED_BACK
    assert "alarm high_5xx in ALARM" in (outcome.reason or "") and "0.5" in (outcome.reason or "")
    with env.store.session() as s:
        kinds = [e.kind for e in eq.list_events(s, deployment_id=outcome.deployment_id, newest_first=False)]
        analyze = next(st for st in sq.list_steps(s, outcome.deployment_id) if st.kind == "analyze")
        rows = ob.all_rows(s)
    assert "alarm.alarm" in kinds and kinds.index("alarm.alarm") < kinds.index("rollback.started")
    assert analyze.state == "failed" and analyze.detail["alarms"]["high_5xx"]["state"] == "ALARM"
    assert analyze.detail["alarms"]["high_5xx"]["labels"] == {"revision": v2}
    assert {r.payload["kind"] for r in rows} >= {"alarm.alarm", "rollback.started", "rollback.completed"}
    assert env.router.serving_revisions() == {git(env.repo, "rev-parse", "v1")}  # type: ignore[attr-defined]


async def test_quiet_alarm_lets_the_bake_succeed_and_records_samples(env: deployer.Environment) -> None:
    await deployer.deploy(env, "v1")
    env.settings = replace(env.settings, bake=1.2, alarms={"high_5xx": HIGH_5XX})
    env.metrics = ScriptedMetrics()
    outcome = await deployer.deploy(env, "v2")
    assert outcome.state == DeployState.SUCCEEDED
    with env.store.session() as s:
        analyze = next(st for st in sq.list_steps(s, outcome.deployment_id) if st.kind == "analyze")
    alarm = analyze.detail["alarms"]["high_5xx"]
    assert alarm["state"] == "OK" and alarm["history"] and alarm["threshold"] == 0.1


def _canary(env: deployer.Environment, **analysis: object) -> None:
    cfg = CanaryAnalysis.model_validate({"metrics": [{"metric": "error_rate", "tolerance": 0.1,
                                                      "min_delta": 0.01}], "min_samples": 3, **analysis})
    env.settings = replace(env.settings, strategy=Canary(steps=(CanaryStep(50, 1.5),), drain_timeout=0),
                           analysis=cfg)


async def test_canary_judge_fails_a_bad_canary(env: deployer.Environment) -> None:
    await deployer.deploy(env, "v1")
    v2 = git(env.repo, "rev-parse", "v2")  # type: ignore[attr-defined]
    _canary(env)
    env.metrics = ScriptedMetrics(bad={v2}, bad_value=0.3)
    outcome = await deployer.deploy(env, "v2")
    assert outcome.state == DeployState.ROLLED_BACK and "canary analysis failed: score 0" in (outcome.reason or "")
    with env.store.session() as s:
        analyze = next(st for st in sq.list_steps(s, outcome.deployment_id) if st.kind == "analyze")
    canary = analyze.detail["canary"]
    assert canary["verdict"] == "fail" and canary["metrics"][0]["canary"] and canary["metrics"][0]["baseline"]
    assert canary["thresholds"]["pass_score"] == 95 and canary["metrics"][0]["p_value"] < 0.05


async def test_canary_judge_passes_a_good_canary(env: deployer.Environment) -> None:
    await deployer.deploy(env, "v1")
    _canary(env)
    env.metrics = ScriptedMetrics()
    outcome = await deployer.deploy(env, "v2")
    assert outcome.state == DeployState.SUCCEEDED


async def test_no_data_is_never_a_silent_pass(env: deployer.Environment) -> None:
    await deployer.deploy(env, "v1")
    _canary(env, min_samples=1000, no_data="pause", no_data_wait=0.5)
    env.metrics = ScriptedMetrics()
    outcome = await deployer.deploy(env, "v2")
    assert outcome.state == DeployState.ROLLED_BACK
    assert "no-data policy pause" in (outcome.reason or "")
    _canary(env, min_samples=1000, no_data="pass")
    outcome = await deployer.deploy(env, "v2")
    assert outcome.state == DeployState.SUCCEEDED
    with env.store.session() as s:
        analyze = next(st for st in sq.list_steps(s, outcome.deployment_id) if st.kind == "analyze")
    assert analyze.detail["canary"]["verdict"] == "nodata" and analyze.detail["canary"]["action"] == "pass"


async def test_watch_rolls_back_inside_the_window_and_only_notifies_after(env: deployer.Environment) -> None:
    from datetime import UTC, datetime, timedelta

    from shipyard.engine.watcher import Watcher

    await deployer.deploy(env, "v1")
    v2 = git(env.repo, "rev-parse", "v2")  # type: ignore[attr-defined]
    v1 = git(env.repo, "rev-parse", "v1")  # type: ignore[attr-defined]
    env.settings = replace(env.settings, alarms={"high_5xx": HIGH_5XX})
    assert (await deployer.deploy(env, "v2")).state == DeployState.SUCCEEDED
    metrics = ScriptedMetrics(bad={v2})

    late = Watcher([Watcher.watched(env, 60, metrics)], clock=lambda: datetime.now(UTC) + timedelta(hours=1))
    await late.run(interval=0.2, until=time.monotonic() + 3, stop=lambda: bool(late.actions))
    assert [a.action for a in late.actions] == ["notify"] and "alarm high_5xx" in late.actions[0].detail
    assert env.router.serving_revisions() == {v2}

    watcher = Watcher([Watcher.watched(env, 60, metrics)])
    await watcher.run(interval=0.2, until=time.monotonic() + 5, stop=lambda: bool(watcher.actions))
    assert [a.action for a in watcher.actions] == ["rollback"]
    assert env.router.serving_revisions() == {v1}
    with env.store.session() as s:
        kinds = [e.kind for e in eq.list_events(s, kind="alarm.*", limit=None)]
    assert "alarm.alarm" in kinds
