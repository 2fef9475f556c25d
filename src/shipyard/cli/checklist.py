"""`shipyard checklist confirm ID NAME [-m NOTE]` and `shipyard checklist show ID`: a deployment's checklist.

A noun with its verbs, like `tokens` and `hosts`: `confirm` records a manual item (locally as the local
actor, SHIPYARD_ACTOR or the OS user; through --server as the API token's name, docs/approvals.md), `show`
lists what is left and what each automated check said (also in `shipyard show ID`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.checklist_view import show_items
from shipyard.cli.project import Project, actor
from shipyard.cli.remote import remote
from shipyard.errors import NotFoundError

app = typer.Typer(help="A deployment's checklist: confirm manual items, see every item's result.",
                  no_args_is_help=True)
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
IdArg = Annotated[str, typer.Argument(metavar="ID", help="The deployment.")]


@app.command("confirm")
def confirm_cmd(
    deployment_id: IdArg,
    item: Annotated[str, typer.Argument(metavar="NAME", help="The manual item (its `name` in the config).")],
    message: Annotated[str, typer.Option("--message", "-m", help="A note kept with the confirmation.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Confirm a manual checklist item of a deployment, as yourself."""
    from shipyard.cli.notify import drain_quietly
    from shipyard.engine.checklists import confirm

    server = remote()
    done: dict[str, Any]
    if server is not None:
        try:
            done = server.post(f"/api/v1/deployments/{quote(deployment_id.strip(), safe='')}/checklist/"
                               f"{quote(item.strip(), safe='')}", {"comment": message})
        finally:
            server.close()
    else:
        project = Project.load(config)
        done = confirm(project.store, deployment_id.strip(), item.strip(), by=actor(), via="cli", comment=message,
                       notifications=project.config.notifications)
        run(drain_quietly(project))
    if as_json:
        render.print_json(done)
        return
    left = f"; still to confirm: {', '.join(done['left'])}" if done["left"] else ""
    render.info(f"{done['id']}: {done['phase']} {done['item']} confirmed by {done['by']}{left}")


@app.command("show")
def show_cmd(
    deployment_id: IdArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Every checklist item of a deployment with its status, who or what decided it, and when."""
    server = remote()
    if server is not None:
        try:
            items = server.get(f"/api/v1/deployments/{quote(deployment_id.strip(), safe='')}")["checklist"]
        finally:
            server.close()
    else:
        from shipyard.store import checklists as cq
        from shipyard.store import deployments as dq

        project = Project.load(config)
        with project.store.session(readonly=True) as s:
            row = dq.get_deployment(s, deployment_id.strip())
            if row is None:
                raise NotFoundError(f"no deployment {deployment_id.strip()!r} (see `shipyard history`)")
            items = cq.view(s, row.id, row.state)
    if as_json:
        render.print_json({"checklist": items})
        return
    show_items(items)

