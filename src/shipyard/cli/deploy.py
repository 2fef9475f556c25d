"""`shipyard deploy`, `rollback`, `recover`, `cancel`: the commands that change what serves (or will)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from shipyard.cli import render
from shipyard.cli.aio import run
from shipyard.cli.notify import delivering, drain_quietly
from shipyard.cli.project import Project, actor
from shipyard.cli.remote import Remote, remote
from shipyard.config.base import check_env_var
from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.admission import record_refused
from shipyard.engine.cancel import cancel_queued
from shipyard.engine.deployer import Outcome
from shipyard.engine.freeze import FreezeOverride
from shipyard.errors import ShipyardError, UsageError
from shipyard.store import deployments as dq

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="Path to shipyard.yaml.")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment to act on.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of the live display.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="NAME=VALUE: override a non-secret variable for this deploy (repeatable). Secrets never go "
                  "on the command line: use `shipyard secrets set`.")]
OverrideFreezeOpt = Annotated[bool, typer.Option(
    "--override-freeze", help="Go ahead although the environment is frozen (needs --reason; recorded).")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why the freeze is overridden (recorded).")]


def freeze_override(override: bool, reason: str | None) -> FreezeOverride | None:
    """`--override-freeze --reason TEXT`: both or neither; the reason goes into the record."""
    if not override:
        if reason is not None:
            raise UsageError("--reason goes with --override-freeze (why a frozen environment is deployed anyway)")
        return None
    if not reason or not reason.strip():
        raise UsageError("--override-freeze needs --reason TEXT: why the frozen environment is deployed anyway")
    return FreezeOverride(reason.strip())


def parse_sets(items: list[str] | None) -> dict[str, str]:
    """`--set NAME=VALUE` pairs, NAME checked like an `env:` key; the resolver refuses names that are
    secrets. Only the name is ever echoed back: a value typed here may be one that must not be printed."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            # Not echoed: without "=" the whole argument may be a value someone meant to keep secret.
            raise UsageError("--set: expected NAME=VALUE (an argument without '=' or without a name)")
        try:
            check_env_var(name.strip())
        except ValueError as exc:
            raise UsageError(f"--set: {exc}") from None
        out[name.strip()] = value
    return out


def _finish(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        render.print_json({"id": outcome.deployment_id, "state": str(outcome.state), "reason": outcome.reason,
                           "revision": outcome.revision, "address": outcome.address})
    elif outcome.state is DeployState.SUCCEEDED:
        where = f" on http://{outcome.address}" if outcome.address else ""
        render.console.print(f"[green]✓ {outcome.deployment_id} succeeded[/] ({outcome.revision[:8]}){where}")
    # Failed or rolled back: DeploymentFailed becomes one `error:` line on stderr and exit 1 in main.run.
    outcome.raise_for_state()


def _run(project: Project, service: str, env: str, title: str, as_json: bool,
         action: Callable[[deployer.Environment], Awaitable[Outcome]]) -> None:
    """Run one engine request against a live agent with the progress display, then report and exit."""
    project.settings(service, env)      # unknown names fail here, before the agent starts
    try:
        project.secrets.resolve(service, env)   # so do missing values: all listed at once, nothing started
    except ShipyardError as exc:
        record_refused(project.store, service, env, exc, actor=actor(), redactor=project.redactor,
                       notifications=project.config.notifications)
        raise
    with project.agent_starting():
        _ = project.store           # opened (created and migrated, on a new host) while the agent comes up
    progress = render.DeployProgress(title, quiet=as_json)

    gated = project.settings(service, env).approvals is not None

    async def go() -> Outcome:
        async with project.agent() as agent, delivering(project, gated):
            outcome = await action(project.environment(service, env, agent, listener=progress))
        await drain_quietly(project)    # bounded; undelivered rows stay queued for `notify worker`
        return outcome

    with progress:
        outcome = run(go())
    _finish(outcome, as_json)


def _override_body(override: FreezeOverride | None) -> dict[str, Any]:
    return {"override_freeze": True, "reason": override.reason} if override else {}


def _remote_run(server: Remote, title: str, as_json: bool, path: str, body: dict[str, Any]) -> None:
    """The request through the API; the live display fed by the deployment's event stream; the same end."""
    try:
        accepted = server.post(path, body)
        progress = render.DeployProgress(title, quiet=as_json)
        with progress:
            for kind, data in server.events(accepted["events"]):
                progress(kind, data)
            final = server.get(accepted["url"])
            progress("state", {"state": final["state"], "reason": final["reason"]})
    finally:
        server.close()
    _finish(Outcome(final["id"], DeployState(final["state"]), final["reason"], final["revision"]), as_json)


def deploy_cmd(
    service: Annotated[str, typer.Argument(help="Service to deploy.")],
    env: EnvOpt,
    rev: Annotated[str | None, typer.Option("--rev", help="Branch, tag or sha (default: the env's branch tip).")]
    = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="Override the configured strategy.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Refuse instead of queueing behind a running deploy.")]
    = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    sets: SetOpt = None,
    override_freeze: OverrideFreezeOpt = False,
    reason: ReasonOpt = None,
) -> None:
    """Deploy a revision of SERVICE to ENV with zero downtime."""
    override = freeze_override(override_freeze, reason)
    server = remote()
    if server is not None:
        _remote_run(server, f"deploy {service} → {env}", as_json, "/api/v1/deployments",
                    {"service": service, "env": env, "rev": rev, "strategy": strategy, "set": parse_sets(sets),
                     "no_wait": no_wait, **_override_body(override)})
        return
    project = Project.load(config)
    project.overrides.update(parse_sets(sets))
    _run(project, service, env, f"deploy {service} → {env}", as_json,
         lambda e: deployer.deploy(e, rev, wait=not no_wait, strategy=strategy, override=override))


def rollback_cmd(
    service: Annotated[str, typer.Argument(help="Service to roll back.")],
    env: EnvOpt,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Refuse instead of queueing behind a running deploy.")]
    = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    override: FreezeOverride | None = None,
) -> None:
    """Go back to the previous successful revision (a traffic flip while it is still warm)."""
    server = remote()
    if server is not None:
        _remote_run(server, f"rollback {service} in {env}", as_json, "/api/v1/rollbacks",
                    {"service": service, "env": env, "no_wait": no_wait, **_override_body(override)})
        return
    _run(Project.load(config), service, env, f"rollback {service} in {env}", as_json,
         lambda e: deployer.rollback(e, wait=not no_wait, override=override))


async def recover_runs(project: Project, agent: Any, *, service: str | None = None, env: str | None = None,
                       listener: Callable[[str], Any] | None = None,
                       actor_name: str | None = None) -> list[dict[str, Any]]:
    """Finish or roll back every unfinished run (of `service`/`env` if given) whose owner died: what
    `shipyard recover` and POST /api/v1/recover do. `listener(deployment id)` gives each run's listener."""
    with project.store.session() as s:
        pending = [(d.id, d.service, d.env) for d in dq.find_unfinished(s, service=service, env=env)]
    results: list[dict[str, Any]] = []
    for dep_id, svc, name in pending:
        outcome = await deployer.recover_one(_env(project, agent, svc, name, dep_id, listener, actor_name), dep_id)
        results.append({"id": dep_id, "service": svc, "env": name,
                        "state": str(outcome.state) if outcome else "skipped",
                        "reason": outcome.reason if outcome else "its owner is alive"})
    return results + await _resume_approved(project, agent, service=service, env=env, listener=listener,
                                            actor_name=actor_name)


def _env(project: Project, agent: Any, service: str, env: str, dep_id: str, listener: Callable[[str], Any] | None,
         actor_name: str | None) -> deployer.Environment:
    e = project.environment(service, env, agent, listener=listener(dep_id) if listener else None)
    if actor_name is not None:
        e.actor = actor_name
    return e


async def _resume_approved(project: Project, agent: Any, *, service: str | None, env: str | None,
                           listener: Callable[[str], Any] | None, actor_name: str | None) -> list[dict[str, Any]]:
    """Gated deployments whose waiting process died: run those whose gate is open; keep the others (their
    approvals are in the store; the daemon, or a later recover, runs them once approved)."""
    from shipyard.engine import approvals
    from shipyard.store.owner import current_owner

    results: list[dict[str, Any]] = []
    for dep_id in approvals.orphaned(project.store, current_owner(), service=service, env=env):
        with project.store.session(readonly=True) as s:
            row = dq.get_deployment(s, dep_id)
            if row is None:
                continue
            svc, name = row.service, row.env
        outcome = None
        if approvals.is_ready(project.store, dep_id):
            outcome = await deployer.resume_approved(_env(project, agent, svc, name, dep_id, listener, actor_name),
                                                     dep_id)
        results.append({"id": dep_id, "service": svc, "env": name,
                        "state": str(outcome.state) if outcome else "awaiting_approval",
                        "reason": outcome.reason if outcome else "kept: it runs once approved (and waited)"})
    return results


def recover_dead_runs(project: Project, *, quiet: bool) -> list[dict[str, Any]]:
    """Finish or roll back every unfinished run of the project whose owner died (starts the agent)."""
    with project.agent_starting():     # the agent comes up while the store opens
        _ = project.store

    async def go() -> list[dict[str, Any]]:
        async with project.agent() as agent:
            return await recover_runs(project, agent, listener=None if quiet else render.DeployProgress)

    return run(go())


def recover_cmd(as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Finish or roll back every run whose owner died; cancel queue entries of dead waiters."""
    server = remote()
    if server is not None:
        try:
            results = server.post("/api/v1/recover", {})["recovered"]
        finally:
            server.close()
    else:
        results = recover_dead_runs(Project.load(config), quiet=as_json)
    if as_json:
        render.print_json({"recovered": results})
    elif not results:
        render.info("nothing to recover")
    else:
        render.table("recover", ["deployment", "service/env", "outcome", "reason"],
                     [(r["id"], f"{r['service']}/{r['env']}", render.styled(r["state"]), r["reason"] or "")
                      for r in results])


def cancel_cmd(
    deployment_id: Annotated[str, typer.Argument(metavar="ID", help="The queued deployment's id.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded with who cancelled).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Cancel a deployment waiting in the queue: its run ends without touching anything (a running one is
    undone with `shipyard rollback`)."""
    server = remote()
    if server is not None:
        try:
            done = server.post(f"/api/v1/deployments/{quote(deployment_id.strip(), safe='')}/cancel",
                               {"reason": reason})
        finally:
            server.close()
    else:
        project = Project.load(config)
        done = cancel_queued(project.store, deployment_id.strip(), actor=actor(), reason=reason,
                             notifications=project.config.notifications)
    if as_json:
        render.print_json(done)
    else:
        render.info(f"{done['id']} ({done['service']}/{done['env']}) {done['reason']}")
