"""Lead time as data: commits counted once per service/env, clamped at zero, unread deploys counted apart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shipyard.reports.commits import parse_rev_list
from shipyard.reports.leadtime import CarriedDeploy, Commit, lead_times

T = datetime(2026, 11, 1, tzinfo=UTC)


def _c(sha: str, hours_before_t: float) -> Commit:
    return Commit(sha, T - timedelta(hours=hours_before_t))


def test_lead_times_by_hand() -> None:
    deploys = [
        CarriedDeploy("d1", "api", "prod", T, (_c("a", 1), _c("b", 3))),               # 3600, 10800
        CarriedDeploy("d2", "api", "prod", T + timedelta(hours=1), (_c("b", 3), _c("c", 0))),  # b again: not counted
        CarriedDeploy("d3", "api", "prod", T + timedelta(hours=2), None),            # could not be read
        CarriedDeploy("d4", "api", "prod", T + timedelta(hours=3), (Commit("e", T + timedelta(hours=4)),)),  # ahead
        CarriedDeploy("w1", "web", "prod", T, (_c("b", 48),)),                         # other service: its own b
    ]
    per, overall = lead_times(deploys)
    api = per[("api", "prod")]
    # api values: a 3600, b 10800, c 3600 (d2 ends 1h after T, c committed at T), e 0 -> sorted 0 3600 3600 10800
    assert (api["commits"], api["deploys"], api["deploys_unread"]) == (4, 4, 1)
    assert api["median_seconds"] == 3600.0 and api["p90_seconds"] == 10800.0 and api["band"] == "elite"
    web = per[("web", "prod")]
    assert web["median_seconds"] == 172800.0 and web["band"] == "high"
    # overall: 0 3600 3600 10800 172800 -> median rank 3 = 3600, p90 rank 5 = 172800
    assert overall["commits"] == 5 and overall["median_seconds"] == 3600.0 and overall["p90_seconds"] == 172800.0


def test_the_earlier_deploy_gets_a_commit_whatever_the_input_order() -> None:
    late = CarriedDeploy("d2", "api", "prod", T + timedelta(days=2), (_c("x", 0),))
    early = CarriedDeploy("d1", "api", "prod", T, (_c("x", 0),))
    per, _ = lead_times([late, early])
    assert per[("api", "prod")]["commits"] == 1 and per[("api", "prod")]["median_seconds"] == 0.0


def test_no_commits_gives_no_figures() -> None:
    per, overall = lead_times([CarriedDeploy("d1", "api", "prod", T, None)])
    assert per[("api", "prod")] == {"commits": 0, "deploys": 1, "deploys_unread": 1, "median_seconds": None,
                                    "p90_seconds": None, "band": None}
    assert overall["commits"] == 0


def test_rev_list_timestamps_are_committer_times() -> None:
    out = "1793491200 " + "a" * 40 + "\n1793487600 " + "b" * 40 + "\n\n"
    assert parse_rev_list(out) == (Commit("a" * 40, datetime(2026, 11, 1, tzinfo=UTC)),
                                   Commit("b" * 40, datetime(2026, 10, 31, 23, tzinfo=UTC)))
