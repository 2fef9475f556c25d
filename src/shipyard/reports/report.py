"""A whole report: the period, its stats and DORA figures, and the same for the period before it.

`report()` returns the JSON object `shipyard report --format json` prints (and /api/v1/reports serves):
{"period": ..., "stats": ..., "dora": ..., "pipeline": ..., "previous": {"period": ..., "stats": ..., "dora": ...}}
(`pipeline`: stage times per deployment against the 30-minute KPI, shipyard.reports.pipeline).
`report_markdown()` renders it (`shipyard.reports.markdown`).
"""

from __future__ import annotations

from typing import Any

from shipyard.reports.commits import CommitReader
from shipyard.reports.dora import dora
from shipyard.reports.markdown import render_markdown
from shipyard.reports.period import Period
from shipyard.reports.pipeline import pipeline
from shipyard.reports.stats import stats


async def report(source: Any, period: Period, service: str | None = None, env: str | None = None, *,
                 commits: CommitReader | None = None, previous: bool = True) -> dict[str, Any]:
    """Stats and DORA for `period` (and, unless `previous=False`, for the period before it)."""
    out: dict[str, Any] = {"period": period.to_dict(), "filters": {"service": service, "env": env},
                           "stats": await stats(source, period, service, env),
                           "dora": await dora(source, period, service, env, commits=commits),
                           "pipeline": await pipeline(source, period, service, env)}
    if previous:
        before = period.previous()
        out["previous"] = {"period": before.to_dict(), "stats": await stats(source, before, service, env),
                           "dora": await dora(source, before, service, env, commits=commits)}
    return out


async def report_markdown(source: Any, period: Period, service: str | None = None, env: str | None = None, *,
                          commits: CommitReader | None = None) -> str:
    """The Markdown summary of `report()`."""
    return render_markdown(await report(source, period, service, env, commits=commits))
