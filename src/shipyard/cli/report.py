"""`shipyard report`: Hanbit's stats, the four DORA keys and a Markdown summary for a period."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import aio, render
from shipyard.cli.project import Project
from shipyard.errors import ShipyardError, UnknownEnvironmentError, UnknownServiceError, UsageError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
FORMATS = ("json", "md")


FOLD_BUDGET = 2.0       # seconds of folding closed days before a report: the rest is read raw, and folded later


def commit_reader(project: Project, services: list[str], env: str | None) -> Any:
    """Reads commits from each service's repo as deploys resolved them (mirror or clone, never the network);
    None when no service has a repo on this machine."""
    from shipyard.reports.commits import GitCommitReader, repo_dir

    repos: dict[str, Path] = {}
    envs = [env] if env else list(project.config.environments)
    for name in services:
        try:
            source = project.settings(name, envs[0]).source
        except ShipyardError:
            continue        # a service whose settings do not resolve: its lead time is reported unread
        found = repo_dir(source.url, source.path, source.mirror)
        if found is not None:
            repos[name] = found
    return GitCommitReader(repos) if repos else None    # no repo to read: lead time is left out, not tried


def _period(spec: str, since: str | None, until: str | None) -> Any:
    from shipyard.reports.period import Period, parse_period, parse_time

    if since is None and until is None:
        return parse_period(spec)
    if since is None:
        raise UsageError("--until needs --since (or give --period alone)")
    end = parse_time(until, "--until") if until else datetime.now(UTC)
    return Period(parse_time(since, "--since"), end)


def report_cmd(
    period: Annotated[str, typer.Option("--period", "-p", help="How far back from now: 12h, 7d, 30d, 2w.")] = "30d",
    since: Annotated[str | None, typer.Option("--since", help="Start (ISO 8601, UTC unless it says); "
                                                              "overrides --period.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="End (ISO 8601); default now. Needs --since.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s", help="Only this service.")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Only this environment.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or md (Markdown).")] = "md",
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Stats, DORA metrics and recommendations for a period (docs/dora.md)."""
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    window = _period(period, since, until)
    project = Project.load(config)
    cfg = project.config
    if service is not None and service not in cfg.services:
        raise UnknownServiceError(f"unknown service {service!r} (known: {', '.join(sorted(cfg.services)) or 'none'})")
    if env is not None and env not in cfg.environments:
        raise UnknownEnvironmentError(f"unknown environment {env!r} (known: {', '.join(sorted(cfg.environments))})")
    from shipyard.reports import render_markdown, report

    reader = commit_reader(project, [service] if service else sorted(cfg.services), env)
    from shipyard.store.folding import fold_closed

    fold_closed(project.store, budget=FOLD_BUDGET)   # what the daemon does; reads stay right without it
    data = aio.run(report(project.store, window, service, env, commits=reader))
    if as_json or fmt == "json":
        render.print_json(data)
    else:
        render.plain_lines(render_markdown(data).splitlines())
