"""Stats and DORA metrics over the deployment history, as JSON objects and a Markdown summary.

The public functions (what `shipyard report` and the HTTP API's /api/v1/stats, /api/v1/dora and
/api/v1/reports call). `source` is a `shipyard.store.Store` (read in a worker thread, so the event loop
keeps serving) or an open SQLAlchemy `Session` (used as it is, in the caller's thread):

    parse_period(spec: str, *, now: datetime | None = None) -> Period          # "30d", "12h", "2w"
    Period(since: datetime, until: datetime, label: str = "")                  # aware UTC, [since, until)
    Period.previous() -> Period                                                # same length, just before
    async stats(source, period, service=None, env=None) -> dict                # Hanbit's stats object
    async dora(source, period, service=None, env=None, *, commits: CommitReader | None = None) -> dict
    async report(source, period, service=None, env=None, *, commits=None, previous=True) -> dict
        # {"period", "filters", "stats", "dora", "previous": {"period", "stats", "dora"}}
    async report_markdown(source, period, service=None, env=None, *, commits=None) -> str
    render_markdown(report: dict) -> str                                       # pure
    GitCommitReader(repos: Mapping[str, Path])                                 # service -> git dir
    lead_times(deploys: Iterable[CarriedDeploy]) -> (per service/env, overall) # pure

What each figure means is written in the docstrings of `stats` and `dora` (and in docs/dora.md); bands
and the year of the DORA report they come from are in `bands`. The database does the counting (GROUP BY
and window functions, `sqlexpr`), so a report costs the same over a thousand or a million deployments;
only lead time reads git, one or two commands per deploy that reached an environment in the period.
"""

from shipyard.reports.commits import CommitReader, GitCommitReader
from shipyard.reports.dora import compute_dora, dora
from shipyard.reports.leadtime import CarriedDeploy, Commit, lead_times
from shipyard.reports.markdown import render_markdown
from shipyard.reports.period import Period, parse_period
from shipyard.reports.report import report, report_markdown
from shipyard.reports.stats import compute_stats, stats

__all__ = ["CarriedDeploy", "Commit", "CommitReader", "GitCommitReader", "Period", "compute_dora", "compute_stats",
           "dora", "lead_times", "parse_period", "render_markdown", "report", "report_markdown", "stats"]
