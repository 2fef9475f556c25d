"""`shipyard init`, `shipyard config validate`, `shipyard config schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli import render
from shipyard.config import config_schema, find_config, render_init, validate_config
from shipyard.errors import UsageError

app = typer.Typer(help="Check and describe shipyard.yaml.", no_args_is_help=True)


def init_cmd(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing shipyard.yaml.")] = False,
) -> None:
    """Write a commented shipyard.yaml for the repo this runs in."""
    target = Path.cwd() / "shipyard.yaml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists (use --force to overwrite)")
    target.write_text(render_init(Path.cwd()))
    render.info(f"wrote {target}; check it with `shipyard config validate`")


@app.command("validate")
def validate(config: Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="Print the problems as JSON.")] = False,
             ) -> None:
    """Report every problem in shipyard.yaml as file:line: key: message."""
    path = config.resolve() if config else find_config(Path.cwd())
    problems = validate_config(path)
    if as_json:
        render.print_json({"file": str(path), "ok": not problems,
                           "problems": [{"file": p.file, "line": p.line, "key": p.key, "message": p.message}
                                        for p in problems]})
    else:
        for p in problems:
            render.error(str(p))
    if problems:
        raise typer.Exit(2)
    if not as_json:
        render.info(f"{path}: ok")


@app.command("schema")
def schema(_as_json: Annotated[bool, typer.Option("--json", help="Accepted like on every read command: the "
                                                                 "schema is JSON either way.")] = False) -> None:
    """Print the JSON Schema of shipyard.yaml (for editor completion)."""
    print(json.dumps(config_schema(), indent=2))
