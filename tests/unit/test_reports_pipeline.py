"""Pipeline time per deployment (the sum of its build, migrate, stage and scan steps) and its p50/p95,
from the hand-made history in tests/reports_history.py (its docstring lists the steps)."""

from __future__ import annotations

from datetime import timedelta

from reports_history import T0, UNTIL, write_history
from shipyard.domain import StepState
from shipyard.reports import Period
from shipyard.reports.markdown import pipeline_section
from shipyard.reports.pipeline import KPI_SECONDS, pipeline
from shipyard.store import Store
from shipyard.store import steps as sq

PERIOD = Period(T0, UNTIL, "10d")


async def test_pipeline_time_per_deployment_and_percentiles(store: Store) -> None:
    write_history(store)
    # prepare steps: d1 50s, d2 200s (failed: still counted), d3 100s, d4 100s, w2 20s; wait_healthy is not
    # a pipeline step. Sorted 20 50 100 100 200: p50 = rank 3, p95 = rank 5.
    pl = await pipeline(store, PERIOD)
    assert (pl["deployments"], pl["p50_seconds"], pl["p95_seconds"], pl["max_seconds"]) == (5, 100.0, 200.0, 200.0)
    assert pl["kpi_seconds"] == KPI_SECONDS and pl["over_kpi"] == 0
    assert [s["deployment"] for s in pl["slowest"]][:1] == ["d2"]
    assert (await pipeline(store, PERIOD, service="web"))["deployments"] == 1


async def test_stages_add_up_and_a_slow_pipeline_is_over_the_kpi(store: Store) -> None:
    write_history(store)
    start = T0 + timedelta(days=3, hours=10)             # d6, which had no steps
    with store.session() as s:
        for idx, (kind, a, b) in enumerate([("stage", 0, 1500), ("prepare", 1500, 1700), ("scan", 1700, 1900),
                                            ("start", 1900, 1950)]):
            row = sq.start_step(s, "d6", "deploy", idx, kind, kind, now=start + timedelta(seconds=a))
            sq.finish_step(s, row.id, StepState.SUCCEEDED, now=start + timedelta(seconds=b))
    pl = await pipeline(store, PERIOD)
    assert pl["deployments"] == 6 and pl["max_seconds"] == 1900.0 and pl["over_kpi"] == 1
    assert pl["slowest"][0] == {"deployment": "d6", "service": "api", "env": "prod", "seconds": 1900.0}
    text = "\n".join(pipeline_section(pl))
    assert "p50 / p95 pipeline time" in text and "over the 30m 0s KPI | 1" in text
    assert pipeline_section({"deployments": 0}) == []
