"""`shipyard approve ID [--reject] [-m WHY]`: decide on a deployment awaiting approval.

Locally the decision is the local actor's (SHIPYARD_ACTOR or the OS user: the trust of this machine and
of write access to the state database, docs/approvals.md); through --server it is the API token's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.notify import drain_quietly
from shipyard.cli.project import Project, actor
from shipyard.cli.remote import remote
from shipyard.engine.approvals import decide

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


def approve_cmd(
    deployment_id: Annotated[str, typer.Argument(metavar="ID", help="The deployment awaiting approval.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject it instead: the deployment is cancelled.")]
    = False,
    message: Annotated[str, typer.Option("--message", "-m", help="Why (recorded with the decision).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Approve (or --reject) a deployment awaiting approval, as yourself."""
    decision = "reject" if reject else "approve"
    server = remote()
    done: dict[str, Any]
    if server is not None:
        try:
            done = server.post(f"/api/v1/deployments/{quote(deployment_id.strip(), safe='')}/approvals",
                               {"decision": decision, "comment": message})
        finally:
            server.close()
    else:
        project = Project.load(config)
        done = decide(project.store, deployment_id.strip(), approver=actor(), decision=decision, comment=message,
                      via="cli", notifications=project.config.notifications)
        run(drain_quietly(project))
    if as_json:
        render.print_json(done)
    elif reject:
        render.info(f"{done['id']} {done['reason']}: cancelled")
    else:
        count = f"{min(len(done['approved']), done['required'])} of {done['required']}"
        render.info(f"{done['id']} approved by {done['approver']} ({count})")
