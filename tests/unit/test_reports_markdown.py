"""The Markdown summary: tables from the figures, and recommendations that follow from them (none without data)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reports_history import T0, UNTIL, write_history
from shipyard.reports import Period, render_markdown, report
from shipyard.reports.markdown import human, recommendations
from shipyard.store import Store


@pytest.fixture
async def rep(sqlite_store: Store) -> dict[str, Any]:
    write_history(sqlite_store)
    return await report(sqlite_store, Period(T0, UNTIL, "10d"))


def test_the_summary_of_the_history(rep: dict[str, Any]) -> None:
    md = render_markdown(rep)
    assert md.startswith("# Deployment report: 10d\n")
    assert "| success rate | 55.56% | 100% |" in md
    assert "| average duration | 3m 27s | 16m 40s |" in md
    assert "| api | prod | 7 | 3 | 3 | 2 | 50% | 4m 35s |" in md
    assert "| api | prod | 3 (2.1/week) (high) | not read | 60% of 5 (low) | 22h 1m (high) |" in md
    assert recommendations(rep) == [
        "Look at `wait_healthy` steps first: they failed 2 times, 2 of the 3 failed steps in this period.",
        "`api` rolls back most: 2 of its 7 runs ended rolled back.",
        "The slowest stage is `wait_healthy`: 2m 42s on average over 4 runs of it.",
        "More failures than in the previous period: 4 against 0.",
        "Deployments got faster: 3m 27s on average against 16m 40s (-79%).",
        "The weakest DORA key is change failure rate (low): 50% of 8 finished deploys failed; elite is at most 5%.",
        "1 failed deploy has no successful run after it yet.",
    ]


def test_recommendations_change_with_the_data(rep: dict[str, Any]) -> None:
    r = copy.deepcopy(rep)
    st, prev = r["stats"], r["previous"]["stats"]
    st["failing_steps"], st["failed_steps"], st["rollbacks_by_service"], st["slowest_steps"] = [], 0, [], []
    prev["failed"], prev["average_duration_seconds"] = 9, st["average_duration_seconds"]
    r["dora"]["overall"]["time_to_restore"]["unrestored"] = 0
    for key in ("deployment_frequency", "lead_time", "change_failure_rate", "time_to_restore"):
        if r["dora"]["overall"][key] is not None:
            r["dora"]["overall"][key]["band"] = "elite"
    # no failed step, no rollback, no timed step, same speed, all elite: only the failure trend is left
    assert recommendations(r) == ["Fewer failures than in the previous period: 4 against 9."]
    prev["failed"] = 4
    assert recommendations(r) == ["As many failures as in the previous period: 4."]
    prev["total"] = 0
    assert recommendations(r) == ["There were no deployments in the previous period to compare with."]


def test_slower_and_new_failures(rep: dict[str, Any]) -> None:
    r = copy.deepcopy(rep)
    r["previous"]["stats"]["average_duration_seconds"] = 100.0
    r["previous"]["stats"]["failed"] = 0
    advice = recommendations(r)
    assert "Deployments got slower: 3m 27s on average against 1m 40s (+107%)." in advice


async def test_an_empty_period_says_so_and_recommends_nothing(sqlite_store: Store) -> None:
    r = await report(sqlite_store, Period(T0, UNTIL, "10d"))
    md = render_markdown(r)
    assert "No deployments in this period." in md
    assert "Recommendations" not in md and "## Stats" not in md and "|" not in md


def test_human_durations() -> None:
    assert [human(v) for v in (None, 0.0, 42.5, 60.0, 3725.0, 90061.0)] == ["-", "0s", "42.5s", "1m 0s", "1h 2m",
                                                                          "1d 1h"]
