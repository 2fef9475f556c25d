"""`shipyard release NAME --env ENV`: release a group of services (config `releases:`) with one abort."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.deploy import freeze_override
from shipyard.cli.project import Project, actor
from shipyard.cli.remote import remote
from shipyard.engine.freeze import FreezeOverride
from shipyard.errors import UsageError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]


def group_plan(project: Project, name: str, env: str, revs: list[str] | None) -> Any:
    """The group's plan from the config (unknown names and bad `--rev` values fail here, one line)."""
    from shipyard.groups.plan import parse_revs, plan_release

    group = project.config.release_group(name)
    project.config.environment(env)
    try:
        chosen = parse_revs(revs, group.services)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    branches = {svc: project.settings(svc, env).branch for svc in group.services}
    return plan_release(name, env, group.waves(), chosen, branches)


def release_group(project: Project, name: str, env: str, revs: list[str] | None, *, wait: bool = True,
                  override: FreezeOverride | None = None, promotion_id: str | None = None,
                  quiet: bool = False) -> Any:
    """Run one release of group `name` in `env` against a live agent; returns the GroupOutcome."""
    from shipyard.cli.notify import drain_quietly
    from shipyard.engine import groups
    from shipyard.store.owner import current_owner

    plan = group_plan(project, name, env, revs)
    for m in plan.members:
        project.secrets.resolve(m.service, env)     # every member's values, before the agent starts
    with project.agent_starting():
        _ = project.store

    def say(service: str, message: str) -> None:
        if not quiet:
            render.info(f"{service}: {message}" if service else message)

    async def go() -> Any:
        async with project.agent() as agent:
            out = await groups.release(project.store, plan, lambda svc: project.environment(svc, env, agent),
                                       actor=actor(), owner=current_owner(), wait=wait, override=override,
                                       promotion_id=promotion_id, say=say)
        await drain_quietly(project)
        return out

    return run(go())


def promoted_revs(project: Project, outcome: Any, name: str) -> list[str]:
    """`SERVICE=REF` for every member whose repo the promotion pushed: its new tag (else its new sha); the
    members whose repo did not move go to their env branch tip, which is what they serve already."""
    group = project.config.release_group(name)
    moved = {r.repo: r.tag or r.new for r in outcome.repos if r.result == "pushed" and (r.tag or r.new)}
    return [f"{svc}={moved[repo]}" for svc in group.services
            if (repo := project.config.services[svc].repo) in moved]


def release_promoted(project: Project, outcome: Any, name: str, env: str, *, quiet: bool) -> Any:
    """`promote SOURCE TARGET --release NAME`: the group released from the promotion's new tags. A release
    that does not succeed freezes TARGET: its branches now hold commits none of its services serve, and an
    auto-deploy or the next plain deploy would bring them back (docs/releases.md)."""
    from shipyard.fleet.freeze import freeze

    done = release_group(project, name, env, promoted_revs(project, outcome, name), promotion_id=outcome.id,
                         quiet=quiet)
    if done.state != "succeeded":
        freeze(project.store, env, reason=f"release {done.group_id} of {outcome.id} {done.state}: the services "
                                          "serve the previous tags", actor=actor(), promotion_id=outcome.id)
    return done


def finish(outcome: Any, as_json: bool) -> None:
    from shipyard.cli.group_view import members_table

    if as_json:
        render.print_json({"id": outcome.group_id, "state": outcome.state, "reason": outcome.reason,
                           "members": outcome.members})
    else:
        members_table(outcome.members)
        if outcome.state == "succeeded":
            render.console.print(f"[green]✓ {outcome.group_id} succeeded[/]")
    outcome.raise_for_state()     # aborted: one `error:` line on stderr and exit 1


def _await_remote(server: Any, url: str) -> dict[str, Any]:
    """Follow a group run the server started until it ends (it records every member as it moves)."""
    import time

    from shipyard.groups.plan import GROUP_UNFINISHED

    while True:
        shown: dict[str, Any] = server.get(url)["release"]
        if shown["state"] not in GROUP_UNFINISHED:
            return shown
        time.sleep(0.5)     # a person's release takes minutes: polling twice a second is plenty


def release_cmd(
    name: Annotated[str, typer.Argument(help="Release group (under `releases:` in shipyard.yaml).")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment to release to.")],
    rev: Annotated[list[str] | None, typer.Option(
        "--rev", help="SERVICE=REF for one member (repeatable), or a bare REF (a shared tag) for every member; "
                      "default: each member's env branch tip.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Refuse instead of queueing behind a running deploy "
                                                            "of a member.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    override_freeze: Annotated[bool, typer.Option(
        "--override-freeze", help="Go ahead although the environment is frozen (needs --reason; recorded).")] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why the freeze is overridden (recorded).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Release a group of services in waves: one member failing rolls every member back."""
    override = freeze_override(override_freeze, reason)
    server = remote()
    if server is not None:
        from shipyard.engine.groups import GroupOutcome

        try:
            body: dict[str, Any] = {"name": name, "env": env, "rev": rev or [], "no_wait": no_wait}
            if override:
                body.update(override_freeze=True, reason=override.reason)
            done = _await_remote(server, server.post("/api/v1/releases", body)["url"])
        finally:
            server.close()
        finish(GroupOutcome(done["id"], done["state"], done["reason"], done["members"], done["env"]), as_json)
        return
    project = Project.load(config)
    finish(release_group(project, name, env, rev, wait=not no_wait, override=override, quiet=as_json), as_json)
