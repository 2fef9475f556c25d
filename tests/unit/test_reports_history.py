"""Stats and DORA figures of the hand-made history in tests/reports_history.py, on SQLite and PostgreSQL.

Every expected number below is worked out by hand from the table in that module's docstring.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from reports_history import REVS, T0, UNTIL, end_of, write_history
from shipyard.reports import Period, compute_dora, compute_stats, dora, stats
from shipyard.reports.dora import carried_deploys
from shipyard.store import Store

PERIOD = Period(T0, UNTIL, "10d")


@pytest.fixture
def history(store: Store) -> Store:
    write_history(store)
    return store


async def test_stats_of_the_period(history: Store) -> None:
    st = await stats(history, PERIOD)
    # 10 runs in [T0, T0+10d): d1-d7, w1-w3 (o1 is before, q1 is at the end: half-open).
    assert (st["total"], st["successful"], st["failed"], st["cancelled"], st["unfinished"]) == (10, 5, 4, 1, 0)
    assert st["success_rate"] == 55.56                       # 5 / (5 + 4)
    assert st["kinds"] == {"deploy": 9, "rollback": 1}
    # finished runs' durations: 100 200 300 400 50 600 60 120 30 -> sum 1860 over 9
    assert st["average_duration_seconds"] == pytest.approx(206.667, abs=0.001)
    assert st["p50_duration_seconds"] == pytest.approx(120.0, abs=0.01)    # rank ceil(4.5) = 5 of 9
    assert st["p90_duration_seconds"] == pytest.approx(600.0, abs=0.01)    # rank ceil(8.1) = 9
    # last 7 days = since T0+3d: d6 ok, d7 cancelled, w2 failed, w3 ok
    assert st["last_7_days"] == {"total": 4, "successful": 2, "failed": 1, "cancelled": 1, "unfinished": 0,
                                 "success_rate": 66.67}
    # last 30 days also takes o1 (ok)
    assert st["last_30_days"]["total"] == 11 and st["last_30_days"]["successful"] == 6
    groups = {(g["service"], g["env"]): g for g in st["by_service_env"]}
    assert set(groups) == {("api", "prod"), ("web", "prod"), ("web", "stg")}
    api = groups[("api", "prod")]
    assert (api["total"], api["successful"], api["failed"], api["cancelled"], api["rolled_back"]) == (7, 3, 3, 1, 2)
    assert api["average_duration_seconds"] == pytest.approx(275.0, abs=0.001)   # 1650 / 6
    assert groups[("web", "prod")]["average_duration_seconds"] == pytest.approx(90.0, abs=0.001)
    assert st["rollbacks_by_service"] == [{"service": "api", "rolled_back": 2}]
    assert st["failed_steps"] == 3
    assert st["failing_steps"] == [{"kind": "wait_healthy", "failures": 2}, {"kind": "prepare", "failures": 1}]
    # deploy-phase finished steps: wait_healthy 50 200 300 100 -> 162.5; prepare 50 200 100 100 20 -> 94;
    # d3's rollback-phase route step is not a stage of a deploy and is left out.
    assert st["slowest_steps"] == [{"kind": "wait_healthy", "average_seconds": 162.5, "count": 4},
                                   {"kind": "prepare", "average_seconds": 94.0, "count": 5}]


async def test_stats_filters_and_the_previous_period(history: Store) -> None:
    web = await stats(history, PERIOD, service="web")
    assert (web["total"], web["successful"], web["failed"]) == (3, 2, 1)
    assert web["rollbacks_by_service"] == [] and web["failing_steps"] == [{"kind": "wait_healthy", "failures": 1}]
    prod = await stats(history, PERIOD, env="prod")
    assert prod["total"] == 9
    prev = await stats(history, PERIOD.previous())
    assert (prev["total"], prev["successful"], prev["average_duration_seconds"]) == (1, 1, 1000.0)


async def test_empty_period_has_zeros_and_no_rates(history: Store) -> None:
    empty = Period(T0 - timedelta(days=400), T0 - timedelta(days=300))
    st = await stats(history, empty)
    assert (st["total"], st["success_rate"], st["average_duration_seconds"], st["p50_duration_seconds"]) == \
        (0, None, None, None)
    assert st["by_service_env"] == [] and st["failing_steps"] == [] and st["slowest_steps"] == []
    d = await dora(history, empty)
    assert d["by_service_env"] == []
    assert d["overall"]["change_failure_rate"] == {"failures": 0, "finished": 0, "rate": None, "band": None}
    assert d["overall"]["deployment_frequency"]["deploys"] == 0
    assert d["overall"]["deployment_frequency"]["band"] == "low"


def _group(d: dict[str, Any], service: str, env: str) -> dict[str, Any]:
    return next(g for g in d["by_service_env"] if (g["service"], g["env"]) == (service, env))


async def test_dora_four_keys(history: Store) -> None:
    d = await dora(history, PERIOD)
    assert d["bands_year"] == 2023
    api = _group(d, "api", "prod")
    # reached: d1 (succeeded), d4 (undone by rollback d5), d6; the rollback d5 is not a deploy
    assert api["deployment_frequency"] == {"deploys": 3, "per_day": 0.3, "per_week": 2.1, "band": "high"}
    # failed: d2 failed, d3 rolled back by itself, d4 rolled back later; finished: d1 d2 d3 d4 d6
    assert api["change_failure_rate"] == {"failures": 3, "finished": 5, "rate": 60.0, "band": "low"}
    # d2 ends 1d 10:03:20 -> d4 ends 2d 10:06:40: 86600 s; d3 ends 1d 12:05:00 -> d4: 79300 s;
    # d4 -> d5 (the rollback) ends 2d 11:00:50: 3250 s. Median (rank 2 of 3) = 79300 s, under a day.
    assert api["time_to_restore"] == {"restored": 3, "unrestored": 0, "median_seconds": 79300.0, "band": "high"}
    assert (end_of("d4") - end_of("d2")).total_seconds() == 86600
    assert api["lead_time"] is None                 # no commit reader given
    web = _group(d, "web", "prod")
    assert web["deployment_frequency"]["deploys"] == 1 and web["deployment_frequency"]["band"] == "medium"
    assert web["change_failure_rate"]["rate"] == 50.0
    assert web["time_to_restore"] == {"restored": 0, "unrestored": 1, "median_seconds": None, "band": None}
    assert _group(d, "web", "stg")["change_failure_rate"] == {"failures": 0, "finished": 1, "rate": 0.0,
                                                              "band": "elite"}
    overall = d["overall"]
    assert overall["deployment_frequency"]["deploys"] == 5 and overall["deployment_frequency"]["band"] == "high"
    assert overall["change_failure_rate"] == {"failures": 4, "finished": 8, "rate": 50.0, "band": "low"}
    assert overall["time_to_restore"] == {"restored": 3, "unrestored": 1, "median_seconds": 79300.0,
                                          "band": "high"}


async def test_dora_filtered_to_one_service(history: Store) -> None:
    d = await dora(history, PERIOD, service="api", env="prod")
    assert [(g["service"], g["env"]) for g in d["by_service_env"]] == [("api", "prod")]
    assert d["overall"]["change_failure_rate"]["failures"] == 3


def test_deploys_carrying_commits_and_what_they_exclude(history: Store) -> None:
    with history.session(readonly=True) as s:
        rows = carried_deploys(s, PERIOD, "api", "prod")
    # in end order d1, d4, d6; the last one before the period (o1, A0) is excluded from the first
    assert [r["id"] for r in rows] == ["d1", "d4", "d6"]
    assert rows[0]["exclude"] == [REVS["A0"]]
    assert rows[1]["exclude"] == [REVS["A1"], REVS["A0"], REVS["A1"]]
    assert rows[2]["exclude"] == [REVS["A1"], REVS["A0"], REVS["A1"], REVS["A3"]]


def test_session_callers_get_the_same_figures(history: Store) -> None:
    with history.session(readonly=True) as s:
        assert compute_stats(s, PERIOD)["total"] == 10
        assert compute_dora(s, PERIOD)["overall"]["change_failure_rate"]["failures"] == 4
