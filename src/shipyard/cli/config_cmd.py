"""`shipyard init`, `shipyard config validate`, `shipyard config schema`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli import render
from shipyard.config import config_schema, find_config, render_init, validate_config
from shipyard.config.scaffold import GITIGNORE, STATE_DIR, ensure_gitignore
from shipyard.errors import ShipyardError, UsageError

app = typer.Typer(help="Check and describe shipyard.yaml.", no_args_is_help=True)


def init_cmd(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing shipyard.yaml.")] = False,
) -> None:
    """Write a commented shipyard.yaml for the repo this runs in, and ignore .shipyard/ in .gitignore."""
    here = Path.cwd()
    target = here / "shipyard.yaml"
    if target.exists() and not force:
        raise UsageError(f"{target} already exists (use --force to overwrite)")
    try:
        target.write_text(render_init(here), encoding="utf-8")
        ignored = ensure_gitignore(here)
    except OSError as exc:
        raise ShipyardError(f"cannot write {exc.filename or here}: {exc.strerror or exc}") from None
    render.info(f"wrote {target}; check it with `shipyard config validate`")
    if ignored:
        render.info(f"added {STATE_DIR} (shipyard's local state) to {here / GITIGNORE}")


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
