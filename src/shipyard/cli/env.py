"""`shipyard env show SERVICE --env E`: every variable a deploy would hand the service, with its source.

Secrets are masked unless `--reveal` is given, and a reveal is an audit event (who, which names) so a
look at production values is never silent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.project import Project, actor
from shipyard.secrets.context import audit
from shipyard.secrets.redact import MIN_LENGTH
from shipyard.secrets.resolver import Resolved

app = typer.Typer(help="What a service's processes get in their environment, and from where.",
                  no_args_is_help=True)

MASKED = "********"
MISSING = "<missing>"


def _shown(resolved: Resolved, reveal: bool) -> list[dict[str, Any]]:
    rows = []
    for name, v in resolved.values.items():
        value = MISSING if v.value is None else (v.value if reveal or not v.secret else MASKED)
        rows.append({"name": name, "source": v.source, "secret": v.secret, "value": value,
                     "missing": name in resolved.missing})
    for name in resolved.missing:
        if name not in resolved.values:          # a ${secret:NAME} reference with no value anywhere
            rows.append({"name": name, "source": "-", "secret": True, "value": MISSING, "missing": True})
    return rows


@app.command("show")
def show_cmd(
    service: Annotated[str, typer.Argument(help="Service whose environment to show.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment.")],
    reveal: Annotated[bool, typer.Option("--reveal", help="Show secret values (recorded in the audit trail).")]
    = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")] = None,
) -> None:
    """List every variable of SERVICE in ENV: name, source (shipyard.yaml, environments.ENV, secret:PROVIDER,
    override) and value (secrets masked)."""
    project = Project.load(config)
    project.settings(service, env)
    resolved = project.secrets.resolve(service, env, strict=False)
    rows = _shown(resolved, reveal)
    if reveal:
        audit(project.store, "secrets.revealed", service=service, env=env, actor=actor(),
              names=resolved.secret_names())
    if as_json:
        data = {"service": service, "env": env, "values": rows, "missing": resolved.missing}
        if reveal:
            render.reveal_json(data)
        else:
            render.print_json(data)
        return
    table = [(r["name"], r["source"], r["value"]) for r in rows]
    title = f"{service}/{env}" + ("  (secrets revealed)" if reveal else "")
    if reveal:
        render.reveal_table(title, ["name", "source", "value"], table)
    else:
        render.table(title, ["name", "source", "value"], table)
    if resolved.missing:
        render.info(f"missing or empty: {', '.join(resolved.missing)} (a deploy would refuse to start)")
    short = [n for n, v in resolved.values.items() if v.secret and v.value and len(v.value) < MIN_LENGTH]
    if short:
        render.info(f"note: {', '.join(short)} shorter than {MIN_LENGTH} characters: not masked in output")
