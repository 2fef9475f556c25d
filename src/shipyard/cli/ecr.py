"""`shipyard ecr prune`: keep the newest N images of an ECR repository and every one ECS still uses."""

from __future__ import annotations

from typing import Annotated

import typer

from shipyard.cli import render

app = typer.Typer(help="ECR: image housekeeping.", no_args_is_help=True)


@app.command("prune")
def prune_cmd(
    repository: Annotated[list[str], typer.Option("--repository", "-r", help="ECR repository name (repeatable).")],
    keep: Annotated[int, typer.Option("--keep", min=1, max=1000, help="Newest images kept per repository.")] = 10,
    cluster: Annotated[list[str] | None, typer.Option(
        "--cluster", help="ECS cluster whose live and warm services protect their images (repeatable; "
                          "default: every cluster in the region).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan and result as JSON.")] = False,
    region: Annotated[str | None, typer.Option("--region", help="AWS region (default: boto3's).")] = None,
    endpoint_url: Annotated[str | None, typer.Option("--endpoint-url", help="Another ECR/ECS endpoint "
                                                     "(a VPC endpoint, LocalStack, moto).")] = None,
) -> None:
    """Delete images beyond the newest --keep of each repository, never one a live or warm ECS task
    definition uses (by tag or by digest). Exit 1 when AWS refused to delete any image."""
    from pydantic import ValidationError

    from shipyard.aws import AwsSettings
    from shipyard.cli.aio import run
    from shipyard.config.ecr import EcrPolicy
    from shipyard.ecr.prune import prune
    from shipyard.errors import UsageError

    try:
        EcrPolicy(keep=keep, repositories=repository)
    except ValidationError as exc:
        raise UsageError(f"--repository: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    results = run(prune(list(dict.fromkeys(repository)), keep, cluster or None, dry_run=dry_run,
                        settings=AwsSettings(region, endpoint_url)))
    if as_json:
        render.print_json({"results": [r.to_dict() for r in results]})
    else:
        for result in results:
            plan = result.plan
            for d in plan.decisions:
                if d.keep:
                    render.info(f"keep   {plan.repository} {d.image.label()}: {d.reason}")
                else:
                    verb = "would delete" if dry_run else "delete"
                    render.info(f"{verb} {plan.repository} {d.image.label()}: {d.reason}")
            done = (f"would delete {len(plan.delete)}" if dry_run
                    else f"deleted {len(result.deleted)} of {len(plan.delete)}")
            render.info(f"{plan.repository}: {len(plan.decisions)} images, kept {len(plan.kept)}, {done}")
    failures = [line for r in results for line in r.failures]
    for line in failures:
        render.error(line)
    if failures:
        raise typer.Exit(1)
