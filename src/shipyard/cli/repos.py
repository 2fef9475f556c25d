"""`shipyard repos ...`: look at and act on every service repo at once (or `--only a,b`, `--group g`).

Actions run in parallel (`--jobs`, default 4) with a live view, then one summary names every repo that
succeeded, failed or had nothing to do; the exit code is 1 if any failed. `--fail-fast` stops starting
new repos after the first failure (the ones running finish).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.project import Project
from shipyard.errors import FleetError, UsageError
from shipyard.fleet import ops
from shipyard.fleet.inventory import RepoSpec, select_repos
from shipyard.fleet.parallel import DEFAULT_JOBS, RepoOutcome, for_each, summary_counts
from shipyard.fleet.status import env_cell, repo_status

app = typer.Typer(help="Look at and act on all service repos at once.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
OnlyOpt = Annotated[list[str] | None, typer.Option("--only", help="Only these repos (comma-separated).")]
GroupOpt = Annotated[str | None, typer.Option("--group", "-g", help="Only the repos in this group.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Repos worked on at the same time.")]
FailFastOpt = Annotated[bool, typer.Option("--fail-fast", help="Start no more repos after the first failure.")]
BranchOpt = Annotated[str | None, typer.Option("--branch", "-b", help="Branch to act on (default: the current).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]

LABELS = {"ok": "ok", "failed": "failed", "nothing": "nothing to do", "skipped": "not started"}


def _specs(project: Project, only: list[str] | None, group: str | None) -> list[RepoSpec]:
    return select_repos(project.config, project.root, only=only or [], group=group)


def _status_rows(project: Project, only: list[str] | None, group: str | None, fetch: bool,
                 jobs: int) -> list[dict[str, Any]]:
    specs = _specs(project, only, group)
    by_name = {s.name: s for s in specs}

    async def go() -> list[dict[str, Any]]:
        if fetch:
            await for_each(list(by_name), lambda n: ops.op_fetch(by_name[n]), jobs=jobs)
        rows: dict[str, dict[str, Any]] = {}

        async def one(name: str) -> RepoOutcome:
            rows[name] = await repo_status(by_name[name], project.config)
            return RepoOutcome("ok")

        await for_each(list(by_name), one, jobs=max(jobs, 8))      # local reads: cheap to widen
        return [rows[n] for n in by_name]

    return run(go())


def status_cmd(
    only: OnlyOpt = None, group: GroupOpt = None,
    fetch: Annotated[bool, typer.Option("--fetch", help="Fetch every repo first (else origin as last fetched).")]
    = False,
    jobs: JobsOpt = DEFAULT_JOBS, as_json: JsonOpt = False, config: ConfigOpt = None,
) -> None:
    """Per repo: current branch, uncommitted changes, each env branch against origin, the last deploy tag."""
    project = Project.load(config)
    rows = _status_rows(project, only, group, fetch, jobs)
    if as_json:
        render.print_json({"repos": rows})
        return
    envs = list(project.config.environments)
    columns = ["repo", "branch", "changes", *[f"{env} ({project.config.environments[env].branch})" for env in envs],
               "last tag"]
    table = []
    for r in rows:
        if r["error"]:
            table.append([r["repo"], render.styled("failed"), r["error"], *["" for _ in envs], ""])
            continue
        changes = f"{r['dirty']} changed" if r["dirty"] else "clean"
        if r["untracked"]:
            changes += f", {r['untracked']} untracked"
        branch = r["branch"] or ("(bare)" if r.get("kind") == "bare" else "(detached)")
        table.append([r["repo"], branch, changes, *[env_cell(r["envs"][e]) for e in envs], r["last_tag"] or "-"])
    render.table(None, columns, table)


def _run_action(title: str, project: Project, only: list[str] | None, group: str | None, jobs: int,
                fail_fast: bool, as_json: bool, work: Callable[[RepoSpec], Awaitable[RepoOutcome]],
                show_output: bool = False) -> None:
    specs = _specs(project, only, group)
    by_name = {s.name: s for s in specs}
    progress = render.RepoProgress(title, list(by_name), quiet=as_json)
    with progress:
        results = run(for_each(list(by_name), lambda n: work(by_name[n]), jobs=jobs, fail_fast=fail_fast,
                               listener=progress))
    groups = summary_counts(results)
    if as_json:
        render.print_json({"command": title, "repos": [{"repo": n, "status": o.status, "detail": o.detail, **o.data}
                                                       for n, o in results.items()], **groups})
    else:
        if show_output:
            for name, out in results.items():
                text = (out.data.get("stdout", "") + out.data.get("stderr", "")).rstrip()
                if text:
                    render.console.print(f"── {name} ──", markup=False)
                    render.console.print(text, markup=False, soft_wrap=True)
        render.table(None, ["repo", "result", "detail"],
                     [(n, render.styled(o.status), o.detail) for n, o in results.items()])
        render.info(", ".join(f"{len(v)} {LABELS[k]}" + (f" ({', '.join(v)})" if k != "ok" and v else "")
                              for k, v in groups.items() if v))
    if groups["failed"]:
        raise FleetError(f"{title}: {len(groups['failed'])} of {len(results)} repos failed "
                         f"({', '.join(groups['failed'])})")


def fetch_cmd(branch: BranchOpt = None, only: OnlyOpt = None, group: GroupOpt = None, jobs: JobsOpt = DEFAULT_JOBS,
              fail_fast: FailFastOpt = False, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Fetch origin in every repo (branches and tags; only fast-forwards of remote-tracking refs)."""
    _run_action("fetch", Project.load(config), only, group, jobs, fail_fast, as_json,
                lambda spec: ops.op_fetch(spec, branch))


def pull_cmd(branch: BranchOpt = None, only: OnlyOpt = None, group: GroupOpt = None, jobs: JobsOpt = DEFAULT_JOBS,
             fail_fast: FailFastOpt = False, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Fast-forward the current branch (or --branch) from origin in every repo; never merges."""
    _run_action("pull", Project.load(config), only, group, jobs, fail_fast, as_json,
                lambda spec: ops.op_pull(spec, branch))


def push_cmd(branch: BranchOpt = None, only: OnlyOpt = None, group: GroupOpt = None, jobs: JobsOpt = DEFAULT_JOBS,
             fail_fast: FailFastOpt = False, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Push the current branch (or --branch) to origin in every repo; nothing to push is skipped; never forced."""
    _run_action("push", Project.load(config), only, group, jobs, fail_fast, as_json,
                lambda spec: ops.op_push(spec, branch))


def checkout_cmd(branch: Annotated[str, typer.Option("--branch", "-b", help="Branch to switch to.")],
                 only: OnlyOpt = None, group: GroupOpt = None, jobs: JobsOpt = DEFAULT_JOBS,
                 fail_fast: FailFastOpt = False, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Check out --branch in every repo (git refuses where local changes would be overwritten)."""
    _run_action("checkout", Project.load(config), only, group, jobs, fail_fast, as_json,
                lambda spec: ops.op_checkout(spec, branch))


def exec_cmd(command: Annotated[list[str], typer.Argument(help="Command and arguments, after `--`.")],
             only: OnlyOpt = None, group: GroupOpt = None, jobs: JobsOpt = DEFAULT_JOBS,
             fail_fast: FailFastOpt = False,
             timeout: Annotated[float, typer.Option("--timeout", help="Seconds before a repo's command is killed.")]
             = 600.0,
             as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Run a command in every repo's working copy: `shipyard repos exec -- git log -1` (no shell; use
    `-- sh -c '...'` for one). SHIPYARD_REPO names the repo."""
    if not command:
        raise UsageError("repos exec needs a command after `--`, e.g. shipyard repos exec -- git status -s")
    _run_action("exec", Project.load(config), only, group, jobs, fail_fast, as_json,
                lambda spec: ops.op_exec(spec, command, timeout=timeout), show_output=True)


app.command("status")(status_cmd)
app.command("list")(status_cmd)
app.command("fetch")(fetch_cmd)
app.command("pull")(pull_cmd)
app.command("push")(push_cmd)
app.command("checkout")(checkout_cmd)
app.command("exec")(exec_cmd)
