"""`shipyard tokens create|list|revoke`: the API's tokens. A token is shown once, when made; the store keeps
only its hash, so a lost token is revoked and made again, never recovered."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.project import Project, actor
from shipyard.errors import UsageError
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken

app = typer.Typer(help="API tokens for `shipyard serve` (scopes: read, deploy, approve, admin).",
                  no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def token_dict(row: ApiToken) -> dict[str, Any]:
    return {"name": row.name, "id": row.id, "scopes": sorted(tq.scopes_of(row)),
            "envs": sorted(tq.envs_of(row) or []) or None, "created_by": row.created_by,
            "created_at": row.created_at, "last_used_at": row.last_used_at, "revoked_at": row.revoked_at}


@app.command("create")
def create_cmd(
    name: Annotated[str, typer.Option("--name", help="What the token is for (the actor of what it does).")],
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated: read, deploy, approve, admin.")] = "read",
    env: Annotated[list[str] | None, typer.Option("--env", help="Only this environment (repeatable).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Make a token and print it, once."""
    project = Project.load(config)
    wanted = tq.parse_scopes(scopes)
    unknown = [e for e in env or [] if e not in project.config.environments]
    if unknown:
        raise UsageError(f"unknown environment {unknown[0]!r}: shipyard.yaml has "
                         f"{', '.join(project.config.environments)}")
    with project.store.session() as s:
        row, token = tq.create_token(s, name=name, scopes=wanted, envs=env, actor=actor())
        shown = token_dict(row)
    if as_json:
        render.reveal_json({**shown, "token": token})
        return
    render.info(f"token {name!r} ({', '.join(wanted)}{'; ' + ', '.join(env) if env else ''}); shown only now:")
    render.reveal(token)


@app.command("list")
def list_cmd(
    revoked: Annotated[bool, typer.Option("--revoked", help="Include revoked tokens.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The tokens (never their secrets)."""
    project = Project.load(config)
    with project.store.session(readonly=True) as s:
        rows = [token_dict(r) for r in tq.list_tokens(s, include_revoked=revoked)]
    if as_json:
        render.print_json({"tokens": rows})
        return
    render.table(None, ["name", "scopes", "envs", "created", "by", "last used", "revoked"],
                 [(r["name"], ",".join(r["scopes"]), ",".join(r["envs"] or []) or "all", render.ago(r["created_at"]),
                   r["created_by"], render.ago(r["last_used_at"]) if r["last_used_at"] else "never",
                   render.ago(r["revoked_at"]) if r["revoked_at"] else "") for r in rows])


@app.command("revoke")
def revoke_cmd(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Revoke a token: the API refuses it from the next request on."""
    project = Project.load(config)
    with project.store.session() as s:
        shown = token_dict(tq.revoke_token(s, name))
    if as_json:
        render.print_json(shown)
        return
    render.info(f"revoked token {name!r}")
