"""Lead time for changes, calculated from data (no I/O): commits and the deploys that carried them.

For each commit first carried to an environment by a deploy that reached it in the period, the lead time is
from the commit's committer time to the end of that deploy. A commit is counted once per (service, env):
when two deploys carried it (a redeploy after a rollback), the earlier one counts. A committer time after
the deploy's end (a clock that ran ahead) counts as zero rather than as a negative lead time.

The commits come from `shipyard.reports.commits` (git); a deploy whose commits could not be read (its repo
is not on this machine, the revision is gone) is counted in `deploys_unread` and adds no commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shipyard.reports.bands import lead_time_band
from shipyard.reports.sqlexpr import nearest_rank, rounded


@dataclass(frozen=True)
class Commit:
    sha: str
    committed_at: datetime        # the committer time, aware UTC


@dataclass(frozen=True)
class CarriedDeploy:
    """A deploy that reached the env, with the commits it brought (None: they could not be read)."""

    deployment_id: str
    service: str
    env: str
    finished_at: datetime
    commits: tuple[Commit, ...] | None


def lead_time_values(deploys: Iterable[CarriedDeploy]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (service, env): the lead times in seconds of each commit, and how many deploys were read or not."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    seen: set[tuple[str, str, str]] = set()
    for dep in sorted(deploys, key=lambda d: (d.finished_at, d.deployment_id)):
        group = out.setdefault((dep.service, dep.env), {"values": [], "deploys": 0, "deploys_unread": 0})
        group["deploys"] += 1
        if dep.commits is None:
            group["deploys_unread"] += 1
            continue
        for commit in dep.commits:
            key = (dep.service, dep.env, commit.sha)
            if key in seen:
                continue
            seen.add(key)
            group["values"].append(max(0.0, (dep.finished_at - commit.committed_at).total_seconds()))
    return out


def summarize(values: list[float], deploys: int, unread: int) -> dict[str, Any]:
    """The lead-time object of a report: commit count, median and p90 in seconds, band."""
    median = nearest_rank(values, 50)
    return {"commits": len(values), "deploys": deploys, "deploys_unread": unread,
            "median_seconds": rounded(median), "p90_seconds": rounded(nearest_rank(values, 90)),
            "band": lead_time_band(median)}


def lead_times(deploys: Iterable[CarriedDeploy]) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any]]:
    """Lead-time objects per (service, env) and over all of them together."""
    groups = lead_time_values(deploys)
    per = {key: summarize(g["values"], g["deploys"], g["deploys_unread"]) for key, g in groups.items()}
    every = [v for g in groups.values() for v in g["values"]]
    overall = summarize(every, sum(g["deploys"] for g in groups.values()),
                        sum(g["deploys_unread"] for g in groups.values()))
    return per, overall
