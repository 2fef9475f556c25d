"""`shipyard aws policy SERVICE`: the least-privilege IAM policy the service's configuration needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from shipyard.cli import render

app = typer.Typer(help="AWS: what shipyard needs from an account.", no_args_is_help=True)


@app.command("policy")
def policy_cmd(
    service: Annotated[str, typer.Argument(help="The service whose targets, routers, metrics and secrets count.")],
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="Environment(s) (default: all).")] = None,
    account: Annotated[str, typer.Option("--account", help="The AWS account id put in ARNs (default: *).")] = "*",
    region: Annotated[str, typer.Option("--region", help="The region put in ARNs where the config names none "
                                        "(default: *).")] = "*",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")] = None,
) -> None:
    """Print the IAM policy document (JSON) that deploying SERVICE needs: attach it to the deploy role."""
    from shipyard.aws.policy import Scope, policy
    from shipyard.cli.project import Project
    from shipyard.errors import UsageError

    if account != "*" and not (account.isdigit() and len(account) == 12):
        raise UsageError(f"--account {account!r}: an AWS account id is 12 digits")
    project = Project.load(config)
    envs = env or list(project.config.environments)
    doc = policy(project.config, [project.settings(service, e) for e in envs], Scope(account, region))
    if not doc["Statement"]:
        render.info(f"{service} needs no AWS access in {', '.join(envs)}")
    render.plain_lines(json.dumps(doc, indent=2).splitlines())
