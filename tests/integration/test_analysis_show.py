"""`shipyard show` prints every alarm's rule, samples and state, and the canary verdicts with thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shipyard.config.alerting import Alarm
from shipyard.domain import StepState
from shipyard.domain.plan import Analyze
from shipyard.monitoring.alarms import explain
from shipyard.monitoring.judge import JudgeConfig, MetricCheck, judge
from shipyard.store import Store, default_url
from shipyard.store import steps as sq
from shipyard.store.deployments import create_deployment


def test_show_prints_alarm_samples_and_canary_verdicts(tmp_path: Path) -> None:
    (tmp_path / "shipyard.yaml").write_text("project: demo\nenvironments:\n  dev: {branch: dev}\n")
    alarm = Alarm(metric="http_5xx_ratio", comparison=">", threshold=0.1, evaluation_periods=3,
                  datapoints_to_alarm=2)
    ev = explain(alarm, [0.0, 0.02, 0.4, 0.5, 0.45], "OK")
    verdict = judge(JudgeConfig(metrics=(MetricCheck("error_rate", min_delta=0.01),)),
                    {"error_rate": [0.4, 0.5, 0.45, 0.41]}, {"error_rate": [0.0, 0.01, 0.0, 0.005]})
    detail = {"alarms": {"high_5xx": {"metric": alarm.metric, "statistic": "Average", "period": 60.0,
                                      "comparison": ">", "threshold": 0.1, "m_of_n": [2, 3],
                                      "treat_missing_data": "missing", "labels": {"revision": "b" * 40},
                                      "state": "ALARM", "error": None, "last": ev.to_dict(), "history": []}},
              "canary": {**verdict.to_dict(), "action": "fail"}}
    with Store.open(default_url(tmp_path)) as store, store.session() as s:
        create_deployment(s, deployment_id="deploy-20261122-000000-bbbbbbbb", service="api", env="dev",
                          revision="b" * 40, strategy="canary", actor="me")
        row = sq.start_step(s, "deploy-20261122-000000-bbbbbbbb", "deploy", 0, "analyze", "analyze 30s",
                            detail=Analyze(30).to_dict())
        sq.finish_step(s, row.id, StepState.FAILED, error="alarm high_5xx in ALARM", detail=detail)
    res = subprocess.run([sys.executable, "-m", "shipyard.cli.main", "show", "deploy-20261122-000000-bbbbbbbb"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
                         env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"})
    out = res.stdout
    assert res.returncode == 0, res.stderr
    assert "high_5xx" in out and "http_5xx_ratio Average > 0.1 (2 of 3" in out and "ALARM" in out
    assert "[0, 0.02, 0.4, 0.5, 0.45]" in out
    assert "canary fail → fail, score 0.0 (pass ≥ 95.0, marginal ≥ 75.0, no-data policy fail)" in out
    assert "error_rate" in out and "Mann-Whitney" in out
    as_json = subprocess.run([sys.executable, "-m", "shipyard.cli.main", "show", "--json",
                              "deploy-20261122-000000-bbbbbbbb"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=60, check=False)
    steps = json.loads(as_json.stdout)["steps"]
    assert steps[0]["detail"]["canary"]["metrics"][0]["canary"] == [0.4, 0.5, 0.45, 0.41]
