"""`shipyard promote`, `hotfix sync`, `rollback --to TAG`, `unfreeze`, and `history --promotions`' table.

Every command here has the same shape: prepare (check, fetch, plan and build every repo; nothing visible
changes), show the plan, confirm as the target environment asks (`confirm: once|twice`; `--yes` skips it;
without a terminal it refuses instead of waiting), push all or nothing, report where each repo is, then
deploy the changed services of an `auto_deploy` env (unless `--no-deploy`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import deploy as deploy_cli
from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.project import Project, actor
from shipyard.cli.remote import Remote, remote
from shipyard.errors import FleetError, PushFailed, ShipyardError, UsageError
from shipyard.fleet import autodeploy
from shipyard.fleet.context import FleetContext, Prepared
from shipyard.fleet.execute import Outcome, RepoReport, execute, record_refused
from shipyard.fleet.freeze import unfreeze
from shipyard.fleet.parallel import DEFAULT_JOBS
from shipyard.fleet.promote import prepare_hotfix, prepare_promotion
from shipyard.fleet.resume import prepare_resume
from shipyard.fleet.rollback import prepare_rollback
from shipyard.fleet.unfinished import abandon

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
OnlyOpt = Annotated[list[str] | None, typer.Option("--only", help="Only these repos (comma-separated).")]
GroupOpt = Annotated[str | None, typer.Option("--group", "-g", help="Only the repos in this group.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, max=64, help="Repos worked on at the same time.")]
MessageOpt = Annotated[str, typer.Option("--message", "-m", help="Merge commit and tag message.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan (and any conflicts); push nothing.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
KeepOpt = Annotated[bool, typer.Option("--keep-partial", help="If a push fails, keep the repos already pushed "
                                       "(finish later with `promote --resume ID`) instead of putting them back.")]
NoDeployOpt = Annotated[bool, typer.Option("--no-deploy", help="Do not deploy auto_deploy envs afterwards.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary.")]

hotfix_app = typer.Typer(help="Hotfix helpers.", no_args_is_help=True)
CONFIRM_RANK = {"none": 0, "once": 1, "twice": 2}


@contextlib.contextmanager
def per_repo_details(as_json: bool = False) -> Iterator[None]:
    """Print a FleetError's per-repo lines (stdout; a JSON object with --json) before main prints its one
    `error:` line on stderr."""
    try:
        yield
    except FleetError as err:
        if err.details and as_json:
            render.print_json({"error": str(err), "problems": [{"repo": r, "problem": p} for r, p in err.details]})
        elif err.details:
            render.repo_lines(err.details)
        raise


def can_prompt() -> bool:
    """A person may answer: a terminal, or (outside CI) a pipe or file on stdin. /dev/null or no stdin: no."""
    stream = sys.stdin
    if stream is None or stream.closed:
        return False
    try:
        if stream.isatty():
            return True
        mode = os.fstat(stream.fileno()).st_mode
    except (OSError, ValueError):
        return False
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return False
    return not stat.S_ISCHR(mode)          # /dev/null is a character device that is not a terminal


def confirm(level: str, env: str, question: str, yes: bool) -> None:
    """Ask as `confirm:` says (twice: the second by typing the env name); refuse rather than hang."""
    if yes or level == "none":
        return
    if not can_prompt():
        raise UsageError(f"{question[0].lower()}{question[1:]} needs confirmation ({env} has confirm: {level}) "
                         "and there is no terminal to ask: pass --yes")
    piped = not sys.stdin.isatty()          # answers read from a pipe are not echoed: end the line ourselves
    try:
        answer = typer.confirm(f"{question}?", default=False, err=True)
        if piped:
            typer.echo("", err=True)
        if not answer:
            raise ShipyardError("not confirmed: nothing was pushed")
        if level == "twice":
            typed = typer.prompt(f"Type the environment name ({env}) to confirm", default="", show_default=False,
                                 err=True)
            if piped:
                typer.echo("", err=True)
            if typed.strip() != env:
                raise ShipyardError(f"confirmation did not match {env!r}: nothing was pushed")
    except typer.Abort:
        raise UsageError(f"no answer to the confirmation for {env} on stdin: nothing was pushed "
                         "(pass --yes to confirm without a terminal)") from None


def show_plan(prepared: Prepared, *, commits: bool) -> None:
    """Per repo: what moves (commit count, first subjects with --dry-run), the tag, or why it is skipped."""
    plan = prepared.plan
    rows: list[tuple[str, Any, str]] = []
    for r in plan.repos:
        built = prepared.built.get(r.repo)
        if r.action == "update" and built and built.problem:
            rows.append((r.repo, render.styled("conflict"), built.problem))
            continue
        if r.action != "update":
            rows.append((r.repo, render.styled("skipped" if r.action == "skip" else "failed"), r.reason))
            continue
        moving = "; ".join(f"{m.count} commit(s) → {m.branch}" for m in r.moving)
        tag = f", tag {built.tag}" if built and built.tag else ""
        rows.append((r.repo, render.styled("pending"), moving + tag))
        if commits:
            for m in r.moving:
                into = f"→ {m.branch}: " if len(r.moving) > 1 else ""
                for c in m.commits[:20]:
                    rows.append(("", "", f"  {into}{render.short_sha(c.sha)} {c.subject}"))
                if m.count > 20:
                    rows.append(("", "", f"  {into}... and {m.count - 20} more"))
    what = {"promote": f"{plan.source_env} → {plan.target_env}", "hotfix": " → ".join(
        [str(plan.source_env), *plan.target_envs]), "rollback": f"{plan.target_env} to {plan.extra.get('to')}"}
    render.table(f"{plan.kind} {what[plan.kind]}  ({plan.id})", ["repo", "plan", "detail"], rows)


def show_outcome(outcome: Outcome) -> None:
    render.table(f"{outcome.id}: {outcome.state}", ["repo", "result", "old → new", "tag", "detail"],
                 [(r.repo, render.styled(r.result), f"{render.short_sha(r.old)} → {render.short_sha(r.new)}",
                   r.tag or "", "; ".join([r.detail, *r.notes]).strip("; ")) for r in outcome.repos])


async def deploy_promoted(project: Project, outcome: Outcome, *, no_deploy: bool, actor_name: str | None = None,
                          listener: Callable[[str, str], Any] | None = None,
                          start_agent: Callable[[], Awaitable[None]] | None = None) -> list[dict[str, Any]]:
    """Deploy the changed services of every auto_deploy env a completed promotion moved (the CLI and the
    API); `listener(service, env)` gives each deploy's progress listener; `start_agent` (the server's) is
    awaited before the first deploy instead of the client starting the agent itself."""
    results: list[dict[str, Any]] = []
    for env, changed in outcome.changed.items():
        services = autodeploy.services_to_deploy(project.config, changed)
        if no_deploy or not services or not project.config.environments[env].auto_deploy:
            continue
        if start_agent is not None:
            await start_agent()
        async with project.agent(start=start_agent is None) as agent:
            def environment(svc: str, env: str = env, agent: Any = agent) -> Any:
                e = project.environment(svc, env, agent, listener=listener(svc, env) if listener else None)
                if actor_name is not None:
                    e.actor = actor_name
                return e

            done = await autodeploy.deploy_changed(services, environment,
                                                   autodeploy.own_freeze(outcome.kind, outcome.id, env))
        results += [{"env": env, **r} for r in done]
    return results


def settle(ctx: FleetContext, prepared: Prepared, *, dry_run: bool) -> None:
    """After preparing: a plan with problems is recorded as refused (unless a dry run) and raises its
    FleetError (conflict, not ready, frozen: the API's 409)."""
    if prepared.problems() and not dry_run:
        record_refused(ctx, prepared)
    prepared.check()


def nothing_to_push(prepared: Prepared, push_empty: bool = False) -> bool:
    return not prepared.to_push() and not push_empty and not prepared.already_pushed


def drive(project: Project, title: str, prepare: Callable[[FleetContext], Coroutine[Any, Any, Prepared]], *, jobs: int,
          dry_run: bool, yes: bool, keep_partial: bool, no_deploy: bool, as_json: bool,
          push_empty: bool = False) -> None:
    """prepare → show → confirm → execute → report → deploy, with one exit code at the end."""
    progress = render.RepoProgress(title, [], quiet=as_json)
    ctx = FleetContext(project.config, project.root, project.store, actor(), jobs, progress)
    with per_repo_details(as_json):
        with progress:
            prepared = run(prepare(ctx))
        plan = prepared.plan
        if as_json and (dry_run or prepared.problems()):
            render.print_json({"plan": plan_dict(prepared), "problems": [
                {"repo": r, "problem": p} for r, p in prepared.problems()]})
        elif not as_json:
            show_plan(prepared, commits=dry_run)
        try:
            settle(ctx, prepared, dry_run=dry_run)
        except FleetError as err:
            if as_json:
                err.details = []            # already in the JSON printed above
            raise
        if dry_run:
            return
        if nothing_to_push(prepared, push_empty):
            if as_json:
                render.print_json({"plan": plan_dict(prepared), "outcome": None})
            else:
                render.info(f"nothing to {plan.kind}: every repo was skipped")
            return
        level = max((project.config.environments[e].confirm for e in plan.target_envs),
                    key=lambda c: CONFIRM_RANK.get(c, 1))
        confirm(level, plan.target_env, f"{title}: push to {len(prepared.to_push())} repo(s)", yes)
        with render.RepoProgress(title, prepared.to_push(), quiet=as_json) as push_progress:
            ctx.listener = push_progress
            outcome = run(execute(ctx, prepared, keep_partial=keep_partial))
        deployed = run(deploy_promoted(project, outcome, no_deploy=no_deploy, listener=None if as_json else (
            lambda svc, env: render.DeployProgress(f"deploy {svc} → {env}", live=False)))) \
            if outcome.state == "completed" else []
        report(plan_dict(prepared), outcome, deployed, as_json)


def report(plan: dict[str, Any], outcome: Outcome, deployed: list[dict[str, Any]], as_json: bool) -> None:
    """Where each repo is and what was deployed (or the JSON of it), then the exit: local or from the API."""
    if as_json:
        render.print_json({"plan": plan, "outcome": outcome.as_dict(), "deployments": deployed})
    else:
        show_outcome(outcome)
        for d in deployed:
            render.info(f"deploy {d['service']} → {d['env']}: {d['state']} {d.get('id') or ''} "
                        f"{d.get('reason') or ''}".strip())
    if outcome.state != "completed":
        raise PushFailed(failure_line(outcome))
    failed = [d for d in deployed if d["state"] != "succeeded"]
    if failed:
        raise ShipyardError(f"{outcome.id} completed, but deploying {', '.join(d['service'] for d in failed)} "
                            f"failed: {failed[0].get('reason') or failed[0]['state']}")
    if not as_json:
        render.info(f"✓ {outcome.id} completed: {len(outcome.where('pushed'))} pushed, "
                    f"{len(outcome.where('skipped'))} skipped")


def remote_promote(server: Remote, source: str, target: str, *, message: str, dry_run: bool, yes: bool,
                   only: list[str], group: str | None, no_deploy: bool, as_json: bool) -> None:
    """`promote` through --server: POST /api/v1/promotions, reported as locally."""
    remote_fleet(server, "/api/v1/promotions", {"source": source, "target": target, "message": message,
                                                 "only": only, "group": group, "no_deploy": no_deploy},
                 confirm=target, what="promote", dry_run=dry_run, yes=yes, as_json=as_json)


def remote_fleet(server: Remote, path: str, body: dict[str, Any], *, confirm: str | None, what: str, dry_run: bool,
                 yes: bool, as_json: bool) -> None:
    """A fleet command through --server (promote, hotfix sync, rollback --to), reported as locally. The
    server cannot ask, so --yes (for `confirm: twice` it sends the target's name, as typing it would) or
    --dry-run --json."""
    if not (yes or dry_run):
        raise UsageError(f"{what} through --server cannot ask for confirmation: pass --yes (or --dry-run --json)")
    if dry_run and not as_json:
        raise UsageError(f"{what} --dry-run through --server shows the plan as JSON: add --json")
    try:
        done = server.post(path, {**body, "dry_run": dry_run, "confirm": confirm})
    finally:
        server.close()
    if dry_run:           # a plan with problems is a 409 (one line) from the server
        render.print_json({"plan": done["plan"], "problems": []})
        return
    o = done["outcome"]
    outcome = Outcome(o["id"], o["kind"], o["state"], [
        RepoReport(r["repo"], r["result"], r["detail"], r["branch"], r["old_sha"], r["new_sha"], r["tag"],
                   r["notes"]) for r in o["repos"]], o["changed"])
    report(done["plan"], outcome, done["deployments"], as_json)


def _hotfix_target(server: Remote, dry_run: bool, yes: bool) -> str | None:
    """The env a hotfix sync merges into first (what `confirm: twice` wants typed), from the server's plan:
    this client has no config to read the chain from. None for a dry run or without --yes (refused)."""
    if dry_run or not yes:
        return None
    return str(server.post("/api/v1/hotfix-syncs", {"dry_run": True})["plan"]["target_env"])


def _local_only(**given: Any) -> None:
    """Options that stay where the repos are: one line naming them when given with --server."""
    named = [f"--{name.replace('_', '-')}" for name, value in given.items() if value]
    if named:
        raise UsageError(f"{', '.join(named)} do(es) not go through --server: run it where the repos are")


def failure_line(outcome: Outcome) -> str:
    bad = outcome.where("rejected", "failed")
    where = {"compensated": "the repos already pushed were put back",
             "partial": f"kept pushed: {', '.join(outcome.where('pushed', 'compensation_failed'))}; "
                        f"finish with `shipyard promote --resume {outcome.id}` (or give it up with "
                        f"`shipyard promote --abandon {outcome.id}`)",
             "failed": "nothing was pushed"}.get(outcome.state, outcome.state)
    return f"{outcome.id} {outcome.state}: push failed in {', '.join(bad) or '?'}; {where}"


def plan_dict(prepared: Prepared) -> dict[str, Any]:
    plan = prepared.plan
    return {"id": plan.id, "kind": plan.kind, "source_env": plan.source_env, "target_env": plan.target_env,
            "stamp": plan.stamp, "tag": plan.tag, "repos": [
                {"repo": r.repo, "action": r.action, "reason": r.reason,
                 "problem": (prepared.built[r.repo].problem if r.repo in prepared.built else None),
                 "conflicts": (prepared.built[r.repo].conflicts if r.repo in prepared.built else []),
                 "moving": [{"branch": m.branch, "count": m.count,
                             "commits": [{"sha": c.sha, "subject": c.subject} for c in m.commits]} for m in r.moving]}
                for r in plan.repos]}


def promote_cmd(
    source: Annotated[str | None, typer.Argument(help="Environment promoted from (dev).")] = None,
    target: Annotated[str | None, typer.Argument(help="Environment promoted to (stg).")] = None,
    message: MessageOpt = "", dry_run: DryRunOpt = False, yes: YesOpt = False, keep_partial: KeepOpt = False,
    resume: Annotated[str | None, typer.Option("--resume", help="Finish a kept partial promotion (its id).")] = None,
    abandon: Annotated[str | None, typer.Option(
        "--abandon", help="Give up an unfinished promotion (its id): recorded, no repo changes; the repos it "
                          "pushed stay pushed.")] = None,
    reason: Annotated[str, typer.Option("--reason", help="With --abandon: why (recorded).")] = "",
    only: OnlyOpt = None, group: GroupOpt = None, jobs: JobsOpt = DEFAULT_JOBS, no_deploy: NoDeployOpt = False,
    as_json: JsonOpt = False, config: ConfigOpt = None,
) -> None:
    """Merge SOURCE into TARGET (--no-ff) in every repo that has something new, tag, push: all or nothing."""
    server = remote()
    if server is not None:
        if abandon or resume or reason or keep_partial:
            raise UsageError("--resume, --abandon and --keep-partial do not go through --server: run them where "
                             "the repos are")
        if not source or not target:
            raise UsageError("promote needs SOURCE and TARGET environments, e.g. shipyard promote dev stg")
        remote_promote(server, source, target, message=message, dry_run=dry_run, yes=yes, only=only or [],
                       group=group, no_deploy=no_deploy, as_json=as_json)
        return
    project = Project.load(config)
    if abandon:
        if resume or source or target or only or group or dry_run:
            raise UsageError("--abandon ID takes no environments, --resume, --only, --group or --dry-run")
        abandon_cmd(project, abandon, reason, as_json)
        return
    if reason:
        raise UsageError("--reason goes with --abandon ID")
    if resume:
        if source or target or only or group:
            raise UsageError("--resume ID takes no environments, --only or --group: it finishes what it started")
        drive(project, f"resume {resume}", lambda ctx: prepare_resume(ctx, resume), jobs=jobs, dry_run=dry_run,
              yes=yes, keep_partial=True, no_deploy=no_deploy, as_json=as_json)
        return
    if not source or not target:
        raise UsageError("promote needs SOURCE and TARGET environments, e.g. shipyard promote dev stg")
    drive(project, f"promote {source} → {target}",
          lambda ctx: prepare_promotion(ctx, source, target, message=message, only=only or [], group=group),
          jobs=jobs, dry_run=dry_run, yes=yes, keep_partial=keep_partial, no_deploy=no_deploy, as_json=as_json)


def abandon_cmd(project: Project, plan_id: str, reason: str, as_json: bool) -> None:
    """`promote --abandon ID`: record that an unfinished promotion will not be finished."""
    done = abandon(project.store, plan_id, actor=actor(), reason=reason.strip(),
                   notifications=project.config.notifications)
    if as_json:
        render.print_json({"abandoned": done.as_dict()})
        return
    stays = f"; these repos stay pushed: {', '.join(done.pushed)}" if done.pushed else "; nothing had been pushed"
    render.info(f"{done.id} abandoned (was {done.previous_state}){stays}")


def hotfix_sync_cmd(message: MessageOpt = "", dry_run: DryRunOpt = False, yes: YesOpt = False,
                    keep_partial: KeepOpt = False, only: OnlyOpt = None, group: GroupOpt = None,
                    jobs: JobsOpt = DEFAULT_JOBS, no_deploy: NoDeployOpt = False, as_json: JsonOpt = False,
                    config: ConfigOpt = None) -> None:
    """Back-merge a hotfix in every repo: prod's branch into stg's, then stg's into dev's."""
    server = remote()
    if server is not None:
        _local_only(keep_partial=keep_partial)
        # `confirm: twice` on a merged-into env wants its name; the first of the chain is what the CLI types.
        remote_fleet(server, "/api/v1/hotfix-syncs", {"message": message, "only": only or [], "group": group,
                                                      "no_deploy": no_deploy},
                     confirm=_hotfix_target(server, dry_run, yes), what="hotfix sync", dry_run=dry_run, yes=yes,
                     as_json=as_json)
        return
    project = Project.load(config)
    drive(project, "hotfix sync", lambda ctx: prepare_hotfix(ctx, message=message, only=only or [], group=group),
          jobs=jobs, dry_run=dry_run, yes=yes, keep_partial=keep_partial, no_deploy=no_deploy, as_json=as_json)


hotfix_app.command("sync")(hotfix_sync_cmd)


def rollback_cmd(
    service: Annotated[str | None, typer.Argument(help="Service to roll back (traffic flip); omit with --to.")]
    = None,
    env: Annotated[str, typer.Option("--env", "-e", help="Environment to act on.")] = "",
    to: Annotated[str | None, typer.Option("--to", help="Deploy tag: move the env branch of every repo back to "
                                           "it (a revert commit, or --force), then freeze the env.")] = None,
    force: Annotated[bool, typer.Option("--force", help="With --to: reset the branch by force-with-lease "
                                        "(only where environments.ENV.allow_force).")] = False,
    message: MessageOpt = "", dry_run: DryRunOpt = False, yes: YesOpt = False, keep_partial: KeepOpt = False,
    only: OnlyOpt = None, group: GroupOpt = None, jobs: JobsOpt = DEFAULT_JOBS, no_deploy: NoDeployOpt = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Refuse instead of queueing behind a running deploy.")]
    = False,
    override_freeze: deploy_cli.OverrideFreezeOpt = False, reason: deploy_cli.ReasonOpt = None,
    as_json: JsonOpt = False, config: ConfigOpt = None,
) -> None:
    """Roll back SERVICE to its previous release, or with --to TAG every repo's ENV branch to that tag."""
    if not env:
        raise UsageError("rollback needs --env, e.g. shipyard rollback api --env prod")
    if to is None:
        if service is None:
            raise UsageError("rollback needs a SERVICE (previous release) or --to TAG (every repo's branch)")
        if force or only or group:
            raise UsageError("--force, --only and --group apply to `rollback --to TAG` only")
        deploy_cli.rollback_cmd(service, env, no_wait=no_wait, as_json=as_json, config=config,
                                override=deploy_cli.freeze_override(override_freeze, reason))
        return
    if service is not None:
        raise UsageError("rollback --to TAG acts on every repo (or --only/--group), not on one service")
    if override_freeze or reason is not None:
        raise UsageError("--override-freeze and --reason apply to a service rollback (a tag rollback is the "
                         "fix a freeze protects)")
    server = remote()
    if server is not None:
        _local_only(keep_partial=keep_partial)
        remote_fleet(server, "/api/v1/tag-rollbacks", {"env": env, "to": to, "force": force, "message": message,
                                                       "only": only or [], "group": group, "no_deploy": no_deploy},
                     confirm=env, what="rollback --to", dry_run=dry_run, yes=yes, as_json=as_json)
        return
    project = Project.load(config)
    drive(project, f"rollback {env} to {to}",
          lambda ctx: prepare_rollback(ctx, env, to, force=force, message=message, only=only or [], group=group),
          jobs=jobs, dry_run=dry_run, yes=yes, keep_partial=keep_partial, no_deploy=no_deploy, as_json=as_json,
          push_empty=True)


def unfreeze_cmd(env: Annotated[str, typer.Option("--env", "-e", help="Environment to unfreeze.")],
                 as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Allow deploys and promotions into ENV again after a rollback froze it."""
    server = remote()
    if server is not None:
        try:
            lifted = server.post("/api/v1/unfreeze", {"env": env})["lifted"]
        finally:
            server.close()
    else:
        project = Project.load(config)
        lifted = unfreeze(project.config, project.store, env, actor=actor())
    if as_json:
        render.print_json({"env": env, "lifted": lifted})
    elif lifted:
        render.info(f"{env} unfrozen (was frozen by {', '.join(lifted)})")
    else:
        render.info(f"{env} was not frozen")

