"""`shipyard grafana dashboard`: a Grafana dashboard (import JSON) for shipyard's and its router's metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli import render

app = typer.Typer(help="Grafana: a dashboard for shipyard's Prometheus metrics.", no_args_is_help=True)


@app.command("dashboard")
def dashboard_cmd(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write it to this file instead of stdout.")] = None,
    datasource: Annotated[str, typer.Option("--datasource", help="A Prometheus datasource uid (default: "
                                            "chosen on import).")] = "${datasource}",
) -> None:
    """Print (or write) the dashboard JSON: deployments, durations, queue, outbox, router traffic and errors."""
    from shipyard.api.grafana import dashboard

    text = json.dumps(dashboard(datasource), indent=2) + "\n"
    if out is None:
        render.plain_lines([text.rstrip("\n")])
        return
    out.write_text(text, encoding="utf-8")
    render.info(f"wrote {out}")
