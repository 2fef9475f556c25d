"""`shipyard prune`: fold old days of history into daily aggregates and delete their raw rows (retention)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli import render
from shipyard.cli.project import Project
from shipyard.config.durations import parse_duration
from shipyard.errors import UsageError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


def prune_cmd(
    older_than: Annotated[str | None, typer.Option("--older-than", help="Prune what was created longer ago "
                                                   "than this (e.g. 90d; default: `retention` in shipyard.yaml).")
                          ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; change nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Prune runs, steps, events and delivered notifications past the retention, keeping daily aggregates."""
    project = Project.load(config)
    if older_than is not None:
        try:
            seconds = parse_duration(older_than)
        except ValueError as exc:
            raise UsageError(f"--older-than: {exc}") from None
    elif project.config.retention is not None:
        seconds = project.config.retention
    else:
        raise UsageError("no retention configured: give --older-than (e.g. 90d) or set `retention:` in shipyard.yaml")
    from shipyard.store.retention import prune

    result = prune(project.store, seconds, dry_run=dry_run)
    if as_json:
        render.print_json(result.to_dict())
        return
    d = result.deleted
    verb = "would delete" if dry_run else "deleted"
    render.info(f"cutoff {result.cutoff:%Y-%m-%d} (UTC): {result.days_folded} days folded, {verb} "
                f"{d['deployments']} runs, {d['steps']} steps, {d['events']} events, {d['outbox']} delivered "
                f"notifications, {d['git_triggers']} GitOps triggers and {d['git_deliveries']} webhook delivery "
                f"ids; {result.kept} older runs kept (unfinished, or a current/previous release)")
