"""Requests that change what serves: deploy a revision, roll back to the previous one, recover dead runs.

Each request is recorded as a deployment (queued), waits its turn for the (service, env) lease, snapshots
what serves now, plans with the configured strategy, executes, and on failure rolls back. The final state
and reason are always written, whatever happened, so `shipyard history` tells the truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from shipyard.domain.deployment import DeployState, StepState
from shipyard.domain.plan import PIPELINE_KINDS, Drain, Plan, RetireOld, Route, Step, step_from_dict
from shipyard.domain.types import Instance, Revision
from shipyard.engine import approvals, checklists, release
from shipyard.engine.admission import admit_freeze, as_shipyard_error, record_override, refuse, resolve_env
from shipyard.engine.environment import RUNNING_STATES, Environment, EnvSource, Outcome
from shipyard.engine.freeze import FreezeOverride
from shipyard.engine.journal import Journal
from shipyard.engine.lease import acquire, held_by_group, hold_lease
from shipyard.engine.rollback import roll_back
from shipyard.engine.run import Run, StepFailed, revision_label
from shipyard.engine.runstate import RunContext, weights
from shipyard.engine.settings import ServiceSettings, strategy_named
from shipyard.errors import LeaseHeldError, ShipyardError, TargetError, UsageError
from shipyard.monitoring.providers.router import RouterProvider
from shipyard.releases.git import resolve_revision
from shipyard.store import checklists as cq
from shipyard.store import deployments as dq
from shipyard.store import groups as gq
from shipyard.store import leases as lq
from shipyard.store import steps as sq
from shipyard.store.owner import owner_is_dead
from shipyard.strategies import AllAtOnce, HostRolling, PlanInput, Strategy, compose
from shipyard.targets.base import CheckedTarget, PlacingTarget, PruningTarget


def _now() -> datetime:
    return datetime.now(UTC)


def _journal(e: Environment, deployment_id: str) -> Journal:
    return Journal(e.store, deployment_id, e.settings.service, e.settings.env, e.listener, redactor=e.redactor,
                   notifications=e.notifications)


@asynccontextmanager
async def _admission(e: Environment, deployment_id: str | None = None, **data: Any) -> AsyncIterator[None]:
    """Everything inside is the request's admission: a ShipyardError (or an OSError, mapped to one line)
    raised there is recorded as `deploy.refused` and closes the queued row, if any, before it propagates."""
    try:
        yield
    except (ShipyardError, OSError) as exc:
        err = as_shipyard_error(exc)
        refuse(e, err, deployment_id=deployment_id, **data)
        if err is exc:
            raise
        raise err from exc


async def serving(e: Environment) -> tuple[list[Instance], str | None]:
    """The instances the router sends traffic to now, in routing order, and their revision."""
    routed = {b.address: b for b in await e.router.backends() if b.weight > 0}
    insts = [i for i in await e.target.instances() if i.address in routed and i.state in RUNNING_STATES]
    revs = {i.revision for i in insts}
    return insts, (revs.pop() if len(revs) == 1 else None)


async def recover_stale(e: Environment) -> list[Outcome]:
    """Roll back (or finish) runs of this (service, env) whose owner died, before acting on it: otherwise a
    new run would take over the lease and mistake a half-moved traffic split for the serving set."""
    s = e.settings
    # Runs this very process owns are alive by definition: in `shipyard serve` a second deploy of one
    # (service, env) (a webhook while the poller's deploy runs) otherwise took the first over as if its
    # owner had died, since the lease's owner is the same string.
    with e.store.session() as ses:
        unfinished = [d.id for d in dq.find_unfinished(ses, service=s.service, env=s.env)
                      if d.state != DeployState.QUEUED and d.owner != e.owner]
        group = gq.unfinished_group_of(ses, s.service, s.env)
    if group is not None and group.id != e.group and group.owner and owner_is_dead(group.owner):
        # Undoing this member alone would leave the group half released: the group is recovered whole.
        raise UsageError(f"{s.service}/{s.env} is a member of release group {group.id}, whose process died; "
                         "run `shipyard recover` first")
    results = []
    for dep_id in unfinished:
        outcome = await recover_one(e, dep_id)
        if outcome is not None:
            results.append(outcome)
    return results


async def deploy(e: Environment, ref: str | None = None, *, wait: bool = True, strategy: str | None = None,
                 kind: str = "deploy", rollback_of: str | None = None,
                 override: FreezeOverride | None = None) -> Outcome:
    """Deploy `ref` (default: the env's branch tip); `override` lets it through a frozen environment."""
    s = e.settings
    async with _admission(e, ref=ref or s.branch, kind=kind):
        await resolve_env(e)
        s = e.settings
        await recover_stale(e)
        revision: Revision = await resolve_revision(s.source, ref or s.branch)
        strat = strategy_named(strategy, s) if strategy else s.strategy
        if release.is_release(e):
            if strategy and strategy != release.NAME:
                raise UsageError(f"{s.service}/{s.env}: a {s.target.type} target deploys all at once "
                                 f"(--strategy {strategy} needs instances)")
            strat = AllAtOnce()
            await release.preflight(e)
        elif isinstance(e.target, CheckedTarget) and kind == "deploy":
            await e.target.preflight()         # every gap at once, before the run exists (exit 2)
        overridden = admit_freeze(e, override, kind)
        # Rollbacks are not gated (nor checklisted): they go back to what was approved and served before.
        listed = s.checklist if kind == "deploy" else ()
        gated = (s.approvals is not None or any(i.phase == "pre" and i.manual for i in listed)) and kind == "deploy"
        if s.approvals is not None and kind == "deploy":
            await approvals.check_branch(e, revision)
    with e.store.session() as ses:
        row = dq.create_deployment(ses, service=s.service, env=s.env, revision=revision.sha,
                                   ref=revision.ref, strategy=strat.name, actor=e.actor, kind=kind,
                                   owner=e.owner, rollback_of=rollback_of)
        dep_id = row.id
        _link(e, ses, dep_id, kind)
        cq.create_items(ses, dep_id, listed)     # in the row's transaction: no deployment without its list
    journal = _journal(e, dep_id)
    record_override(journal, overridden, override, e.actor)
    journal.event("deploy.queued", f"{s.service}/{s.env} {revision.short} ({revision.ref})",
                  revision=revision.sha, ref=revision.ref, actor=e.actor, subject=revision.subject,
                  author=revision.author)
    if listed:
        refused = await _pre_checks(e, journal, revision)
        if refused is not None:
            return refused
    if gated:
        approvals.open_request(e, dep_id, revision)
        return await _gated(e, journal, dep_id, revision, strat, wait)
    return await _take_turn(e, journal, dep_id, revision, strat, wait, kind)


async def _pre_checks(e: Environment, journal: Journal, revision: Revision) -> Outcome | None:
    """The automated pre items, before anyone is asked and before the lease: one failing ends the
    deployment failed, nothing started (its Outcome); None when all passed."""
    reason = await checklists.run_pre(e.store, journal, cwd=e.settings.checklist_dir or e.releases.root,
                                      revision=revision.sha,
                                      provider=e.metrics or RouterProvider(e.router.stats))
    if reason is None:
        return None
    journal.transition(DeployState.FAILED, reason, finished_at=_now())
    journal.event("deploy.failed", reason, reason=reason)
    return Outcome(journal.deployment_id, DeployState.FAILED, reason, revision.sha)


def _post_items(e: Environment, dep_id: str) -> int:
    """How many automated post items this deployment snapshot (its plan's PostChecklist step runs them)."""
    with e.store.session(readonly=True) as ses:
        return sum(1 for r in cq.list_items(ses, dep_id, "post") if r.kind != "manual")


async def _gated(e: Environment, journal: Journal, dep_id: str, revision: Revision, strat: Strategy,
                 wait: bool) -> Outcome:
    """Wait for the approval gate holding no lease (engine.approvals), then take the turn as any run."""
    async with approvals.holding(e.store, dep_id, e.owner) as taken:
        ended = await approvals.await_turn(e, journal, dep_id, taken)
        if ended is not None:
            return ended
        return await _take_turn(e, journal, dep_id, revision, strat, wait)


async def resume_approved(e: Environment, dep_id: str) -> Outcome | None:
    """Take over the wait of a gated deployment whose holder died and run it once its gate opens (the
    daemon's approvals work, `shipyard recover`); None when it is not ours to take (its holder lives)."""
    if not approvals.take_over(e, dep_id):
        return None
    s = e.settings
    with e.store.session(readonly=True) as ses:
        row = dq.get_deployment(ses, dep_id)
        assert row is not None
        revision, name = Revision(sha=row.revision, ref=row.ref, subject=""), row.strategy
    async with _admission(e, dep_id, kind="deploy", deployment=dep_id):
        await resolve_env(e)
        strat = s.strategy if s.strategy.name == name else strategy_named(name, s)
    return await _gated(e, _journal(e, dep_id), dep_id, revision, strat, True)


async def _take_turn(e: Environment, journal: Journal, dep_id: str, revision: Revision, strat: Strategy,
                     wait: bool, kind: str = "deploy") -> Outcome:
    """Queue for the (service, env) lease, then run (a release target's `rollback` kind restores)."""
    lost = asyncio.Event()

    def waiting(pos: int, holder: str) -> None:
        journal.event("deploy.waiting", f"queued at position {pos + 1} behind {holder}", position=pos + 1,
                      holder=holder)

    # Refused before it started (lease held with --no-wait, the router's address taken): closed as cancelled.
    async with _admission(e, dep_id), _lease(e, dep_id, wait=wait, lost=lost, on_wait=waiting):
        if release.is_release(e):
            return await _run_release(e, journal, dep_id, revision, lost, restore=kind == "rollback")
        return await _run_new(e, journal, dep_id, revision, strat, lost)
    raise AssertionError("unreachable")     # pragma: no cover (mypy: the admission block re-raises)


def _link(e: Environment, ses: Any, dep_id: str, kind: str) -> None:
    """A run inside a release group is linked to its member in the transaction that creates its row, so
    `shipyard recover` never finds a group's deployment it does not know about."""
    if e.group is not None:
        gq.link_deployment(ses, e.group, e.settings.service, dep_id, kind)


def _lease(e: Environment, dep_id: str, *, wait: bool, lost: asyncio.Event,
           on_wait: Any = None) -> Any:
    """The (service, env) lease for this run: its own, or (inside a release group) the group's."""
    s = e.settings
    if e.group is not None:
        return held_by_group(e.store, s.service, s.env, e.group, e.owner)
    return hold_lease(e.store, s.service, s.env, dep_id, e.owner, wait=wait, lost=lost, on_wait=on_wait)


async def _run_new(e: Environment, journal: Journal, dep_id: str, revision: Revision, strat: Any,
                   lost: asyncio.Event) -> Outcome:
    s = e.settings
    desired = await _admit_hosts(e, journal, strat)
    front = await _front(e, journal)
    olds, old_rev = await serving(e)
    ctx = RunContext(old=[i.id for i in olds], old_revision=old_rev, routed=sorted(i.address for i in olds))
    plan = compose(strat, PlanInput(current=len(olds), desired=desired, bake=s.bake,
                                    hooks=frozenset(s.hooks), migrate=s.migrate is not None,
                                    pipeline=s.pipeline)).with_post_checklist(_post_items(e, dep_id))
    journal.transition(DeployState.IN_PROGRESS, None, started_at=_now(), owner=e.owner,
                       previous_revision=old_rev, plan=plan.to_list(), context=ctx.to_dict())
    run = Run(deployment_id=dep_id, revision=revision.sha, settings=s, target=e.target, router=e.router,
              releases=e.releases, journal=journal, context=ctx, actor=e.actor, metrics=e.metrics)
    run.front = front
    journal.event("deploy.started", f"{strat.name}: {len(plan.steps)} steps", strategy=strat.name,
                  revision=revision.sha, previous_revision=old_rev, steps=[run.describe(st) for st in plan.steps])
    return await _drive(e, run, plan, 0, lost)


async def _run_release(e: Environment, journal: Journal, dep_id: str, revision: Revision, lost: asyncio.Event,
                       *, restore: bool) -> Outcome:
    """A release target: all at once, the live record kept as `previous` for the rollback (engine.release)."""
    s = e.settings
    previous = release.live(e)
    plan = (release.rollback_plan(e) if restore else release.deploy_plan(e)).with_post_checklist(
        _post_items(e, dep_id))
    ctx = RunContext(old_revision=previous["revision"] if previous else None, previous=previous,
                     restore=release.record_of(e, revision.sha) if restore else None)
    journal.transition(DeployState.IN_PROGRESS, None, started_at=_now(), owner=e.owner,
                       previous_revision=ctx.old_revision, plan=plan.to_list(), context=ctx.to_dict())
    run = Run(deployment_id=dep_id, revision=revision.sha, settings=s, target=e.target, router=e.router,
              releases=e.releases, journal=journal, context=ctx, actor=e.actor, metrics=e.metrics)
    journal.event("deploy.started", f"{plan.strategy}: {len(plan.steps)} steps", strategy=plan.strategy,
                  revision=revision.sha, previous_revision=ctx.old_revision,
                  steps=[run.describe(st) for st in plan.steps])
    return await _drive(e, run, plan, 0, lost)


async def _admit_hosts(e: Environment, journal: Journal, strat: Strategy) -> int:
    """On a fleet, every host's agent must answer before anything moves. Unreachable hosts refuse the deploy
    by name, unless minimum_healthy_hosts still holds without them: then they are skipped, and recorded.
    Returns the instances wanted."""
    target = e.target
    if not isinstance(target, PlacingTarget):
        return e.settings.instances
    status = await target.probe()
    down = {name: why for name, why in status.items() if why}
    # Only rolling over hosts has host batches (minimum_healthy_hosts); any other strategy needs every host.
    batches = strat.batches if isinstance(strat, HostRolling) else None
    if batches is not None:
        def lost(host: str, why: str, carry_on: bool) -> None:
            then = ("carrying on without it (minimum_healthy_hosts still holds)" if carry_on
                    else "rolling back (too few hosts left for minimum_healthy_hosts)")
            journal.event("host.lost", f"{host} lost mid-deploy: {why}; {then}", host=host, reason=why,
                          carry_on=carry_on)
        target.watch(batches.may_skip, lost)
    if down:
        up = len(status) - len(down)
        listed = "; ".join(f"{name}: {why}" for name, why in down.items())
        if batches is None or not batches.may_skip(len(status), up):
            rule = (f"minimum_healthy_hosts {batches.minimum_healthy} needs {batches.min_healthy(len(status))}"
                    if batches is not None and batches.minimum_healthy is not None
                    else "set minimum_healthy_hosts to deploy without them")
            raise TargetError(f"{len(down)} of {len(status)} hosts unreachable ({listed}); {rule}")
        target.skip(down)
        journal.event("hosts.skipped", f"deploying to {up} of {len(status)} hosts; skipped {listed}",
                      skipped=down)
    return target.desired


async def _front(e: Environment, journal: Journal) -> str | None:
    """Make sure the router listens, and say where: with `listen` unset that is the address it already
    has, or the free port it picked on the first deploy (kept for the next ones)."""
    address = await e.router.ensure()
    if address and not e.settings.listen:
        journal.event("router.listening", f"{e.settings.service}/{e.settings.env} listens on {address} "
                      "(no listen configured: the router keeps this address)", address=address)
    return address


async def _drive(e: Environment, run: Run, plan: Plan, start_at: int, lost: asyncio.Event) -> Outcome:
    """Execute, then finish or roll back; lease loss (someone took over) aborts without touching state."""
    work = asyncio.create_task(run.execute(plan, start_at))
    watch = asyncio.create_task(lost.wait())
    try:
        done, _ = await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        # Interrupted (Ctrl-C): stop at once; the run stays in_progress for `shipyard recover`.
        run.stopped = True
        work.cancel()
        watch.cancel()
        await asyncio.gather(work, watch, return_exceptions=True)
        raise
    watch.cancel()
    if work not in done:
        run.stopped = True
        work.cancel()
        raise ShipyardError(f"{run.id}: lost the deployment lease to another process; stopped here")
    try:
        work.result()
    except StepFailed as exc:
        return await _fail(e, run, plan, str(exc))
    return await _succeed(e, run)


async def _fail(e: Environment, run: Run, plan: Plan, reason: str) -> Outcome:
    touched = _changed_anything(e, run.id)
    if not touched and not run.ctx.new:
        # Nothing moved (e.g. the build failed): there is nothing to roll back.
        if "on_failure" in e.settings.hooks:
            await run.safe_hook("on_failure", "finish", 0)
        run.journal.transition(DeployState.FAILED, reason, finished_at=_now())
        run.journal.event("deploy.failed", reason, reason=reason)
        return Outcome(run.id, DeployState.FAILED, reason, run.revision, run.front)
    run.journal.event("deploy.failed", reason, reason=reason)
    final = await roll_back(run, reason)
    return Outcome(run.id, final, reason, run.revision, run.front)


def _changed_anything(e: Environment, dep_id: str) -> bool:
    with e.store.session() as ses:
        rows = sq.list_steps(ses, dep_id, phase="deploy")
    return any(r.kind not in PIPELINE_KINDS | {"hook"} for r in rows)


async def _succeed(e: Environment, run: Run) -> Outcome:
    """Mark success, then stop what is neither the new set nor the warm previous set."""
    s = e.settings
    if release.is_release(e):
        return await _succeed_release(e, run)
    keep = set(run.ctx.new) | set(run.ctx.old)
    stale = [i for i in await e.target.instances() if i.id not in keep]
    if stale:
        await e.target.stop(stale, s.stop_timeout)
    if "cleanup" in s.hooks:
        await run.safe_hook("cleanup", "finish", 0)     # the end of a deploy, not a rollback step
    run.journal.transition(DeployState.SUCCEEDED, None, finished_at=_now())
    run.journal.event("deploy.succeeded", f"{s.service}/{s.env} now serves {run.revision[:8]}",
                      revision=run.revision)
    in_use = {i.revision for i in await e.target.instances()}
    e.releases.prune(s.service, s.keep_releases, in_use | {run.revision})
    if isinstance(e.target, PruningTarget):
        await _prune_artifacts(run, e.target)
    return Outcome(run.id, DeployState.SUCCEEDED, None, run.revision, run.front)


async def _prune_artifacts(run: Run, target: PruningTarget) -> None:
    try:
        pruned = await target.prune_artifacts()
    except (ShipyardError, OSError) as exc:     # the deploy succeeded: a failed cleanup is said, not fatal
        run.journal.event("release.prune_failed", f"pruning old images failed: {exc}", reason=str(exc))
        return
    if pruned.get("pruned"):
        run.journal.event("release.pruned", f"pruned {len(pruned['pruned'])} old images", **pruned)
    if pruned.get("failures"):
        run.journal.event("release.prune_failed", f"{len(pruned['failures'])} old images were not pruned: "
                          f"{pruned['failures'][0]}", reason="; ".join(pruned["failures"]))


async def _succeed_release(e: Environment, run: Run) -> Outcome:
    """Success on a release target; then its releases beyond `keep` go, never the live or previous one."""
    s = e.settings
    assert isinstance(e.target, release.ReleaseTarget)
    if "cleanup" in s.hooks:
        await run.safe_hook("cleanup", "finish", 0)
    run.journal.transition(DeployState.SUCCEEDED, None, finished_at=_now())
    run.journal.event("deploy.succeeded", f"{s.service}/{s.env} now serves {run.revision[:8]}",
                      revision=run.revision)
    in_use = release.in_use([run.revision, run.ctx.old_revision])
    try:
        pruned = await e.target.prune(int(getattr(s.target, "keep", s.keep_releases)), in_use)
        if pruned.get("pruned"):
            run.journal.event("release.pruned", f"pruned {len(pruned['pruned'])} old releases", **pruned)
    except (ShipyardError, OSError) as exc:     # the deploy succeeded: a failed cleanup is said, not fatal
        run.journal.event("release.prune_failed", f"pruning old releases failed: {exc}", reason=str(exc))
    e.releases.prune(s.service, s.keep_releases, in_use)
    return Outcome(run.id, DeployState.SUCCEEDED, None, run.revision, run.front)


# ---- manual rollback ---------------------------------------------------------------------------------

async def rollback(e: Environment, *, wait: bool = True, override: FreezeOverride | None = None) -> Outcome:
    """Back to the revision that served before the current one: a traffic flip while its set is warm.

    In a frozen environment it is refused like a deploy (the previous release may be the very one a tag
    rollback took out), unless `override` lets it through."""
    async with _admission(e, kind="rollback"):
        await resolve_env(e)
        await recover_stale(e)
        target_rev, last_id = rollback_target(e)
        overridden = admit_freeze(e, override, "rollback")
        warm = [] if release.is_release(e) else [i for i in await e.target.instances()
                                                  if i.revision == target_rev and i.state in RUNNING_STATES]
    s = e.settings
    if not warm:
        # The previous set has expired (or a release target, which has none: it makes the previous release
        # live again, engine.release): redeploy that revision.
        outcome = await deploy(e, target_rev, wait=wait, kind="rollback", rollback_of=last_id, override=override)
        _mark_rolled_back(e, last_id, outcome)
        return outcome
    with e.store.session() as ses:
        row = dq.create_deployment(ses, service=s.service, env=s.env, revision=target_rev, ref=target_rev,
                                   strategy="traffic_flip", actor=e.actor, kind="rollback", owner=e.owner,
                                   rollback_of=last_id)
        dep_id = row.id
        _link(e, ses, dep_id, "rollback")
    journal = _journal(e, dep_id)
    record_override(journal, overridden, override, e.actor)
    journal.event("rollback.requested", f"flip {s.service}/{s.env} back to the warm instances of "
                  f"{revision_label(e.store, s.service, s.env, target_rev)}", revision=target_rev, rollback_of=last_id)
    lost = asyncio.Event()
    async with _admission(e, dep_id), _lease(e, dep_id, wait=wait, lost=lost):
        front = await _front(e, journal)
        olds, old_rev = await serving(e)
        warm = [i for i in await e.target.instances()
                if i.revision == target_rev and i.state in RUNNING_STATES][: s.instances]
        ctx = RunContext(old=[i.id for i in olds], old_revision=old_rev, new=[i.id for i in warm],
                         routed=sorted(i.address for i in olds))
        plan = Plan("traffic_flip", (Route(new=len(warm), old=0, new_percent=100), *_flip_tail(s)))
        journal.transition(DeployState.IN_PROGRESS, None, started_at=_now(), owner=e.owner,
                           previous_revision=old_rev, plan=plan.to_list(), context=ctx.to_dict())
        run = Run(deployment_id=dep_id, revision=target_rev, settings=s, target=e.target, router=e.router,
                  releases=e.releases, journal=journal, context=ctx, actor=e.actor, metrics=e.metrics)
        run.front = front
        journal.event("deploy.started", f"traffic_flip: {len(plan.steps)} steps", strategy="traffic_flip",
                      revision=target_rev, previous_revision=old_rev, steps=[run.describe(st) for st in plan.steps])
        await e.target.keep_warm(warm, None)
        outcome = await _drive(e, run, plan, 0, lost)
    _mark_rolled_back(e, last_id, outcome)
    return outcome


def rollback_target(e: Environment) -> tuple[str, str]:
    """The revision to go back to, and the run being undone: the newest successful run whose revision
    differs from what serves now (so rolling back twice goes further back rather than flip-flopping)."""
    s = e.settings
    with e.store.session() as ses:
        hist = dq.succeeded_history(ses, s.service, s.env, limit=50)
        if not hist:
            raise UsageError(f"{s.service}/{s.env} has no successful deployment to roll back")
        current, last_id = hist[0].revision, hist[0].id
        earlier = next((h.revision for h in hist[1:] if h.revision != current), None)
        target = earlier or hist[0].previous_revision
    if not target:
        raise UsageError(f"{last_id} was the first deployment of {s.service}/{s.env}: nothing to roll back to")
    return target, last_id


def _flip_tail(s: ServiceSettings) -> tuple[Step, ...]:
    return (Drain(s.drain_timeout), RetireOld(keep=0))


def _mark_rolled_back(e: Environment, last_id: str, outcome: Outcome) -> None:
    if outcome.state is not DeployState.SUCCEEDED:
        return
    s = e.settings
    why = f"rolled back by {outcome.deployment_id} to {revision_label(e.store, s.service, s.env, outcome.revision)}"
    j = _journal(e, last_id)
    j.transition(DeployState.ROLLING_BACK, why)
    j.transition(DeployState.ROLLED_BACK, why)     # its finished_at stays when it ended (store rule)


# ---- recovery ----------------------------------------------------------------------------------------

async def recover_one(e: Environment, dep_id: str, *, why: str | None = None) -> Outcome | None:
    """Finish or roll back a run whose owner died; None if its owner is alive (not ours to touch).

    Inside a release group (`e.group`) the group holds the lease and `why` says why the group stopped the
    run (an abort); a member of another unfinished group is left to that group's recovery."""
    async with _admission(e, kind="recover", deployment=dep_id):
        await resolve_env(e)
    s = e.settings
    with e.store.session() as ses:
        row = dq.get_deployment(ses, dep_id)
        assert row is not None
        state, revision = DeployState(row.state), row.revision
        plan = Plan(row.strategy, tuple(step_from_dict(d) for d in row.plan or []))
        ctx = RunContext.from_dict(getattr(row, "context", None))
        steps = sq.list_steps(ses, dep_id, phase="deploy")
        done = sum(1 for r in steps if r.state == StepState.SUCCEEDED)
        last_desc = steps[-1].description if steps else "before its first step"
        owner = row.owner
        member_of = gq.unfinished_group_of(ses, s.service, s.env)
    if member_of is not None and member_of.id != e.group and dep_id in _member_runs(e, member_of.id):
        return None                # the group's recovery finishes or rolls back all its members together
    journal = _journal(e, dep_id)
    if state is DeployState.QUEUED:
        if owner and not owner_is_dead(owner) and e.group is None:
            return None            # still waiting in line: not ours to touch
        said = why or f"owner {owner} died while queued"
        journal.event("recover.cancelled", said, previous_owner=owner, actor=e.actor)
        journal.transition(DeployState.CANCELLED, said, finished_at=_now())
        return Outcome(dep_id, DeployState.CANCELLED, "owner died while queued", revision)
    try:
        if e.group is None:
            await acquire(e.store, s.service, s.env, dep_id, e.owner, wait=False)
    except LeaseHeldError:
        return None

    try:
        journal.update(owner=e.owner)
        journal.event("recover.started", why or f"taking over from dead owner {owner}", previous_owner=owner,
                      actor=e.actor)
        run = Run(deployment_id=dep_id, revision=revision, settings=s, target=e.target, router=e.router,
                  releases=e.releases, journal=journal, context=ctx, actor=e.actor, metrics=e.metrics)
        # Close any step the dead owner left running, so the record shows where it died.
        with e.store.session() as ses:
            for r in sq.list_steps(ses, dep_id):
                if r.state == StepState.RUNNING:
                    sq.finish_step(ses, r.id, StepState.FAILED, error=f"owner {owner} died during this step")
        if state is DeployState.IN_PROGRESS and done == len(plan.steps) and plan.steps:
            return await _succeed(e, run)
        reason = (f"{why} ({last_desc})" if why else f"owner {owner} died ({last_desc}); rolled back by recover")
        if state is DeployState.ROLLING_BACK:
            journal.event("rollback.resumed", reason)
            return Outcome(dep_id, await roll_back(run, reason, resume=True), reason, revision)
        final = await roll_back(run, reason) if (ctx.new or done) else _fail_quiet(journal, reason)
        return Outcome(dep_id, final, reason, revision)
    finally:
        if e.group is None:
            with e.store.session() as ses:
                lq.release(ses, s.service, s.env, dep_id)


def _member_runs(e: Environment, group_id: str) -> set[str]:
    """Every deployment id (forward runs and the abort's rollbacks) of one release group run."""
    with e.store.session(readonly=True) as ses:
        return {i for m in gq.members(ses, group_id) for i in (m.deployment_id, m.rollback_id) if i}


def _fail_quiet(journal: Journal, reason: str) -> DeployState:
    journal.transition(DeployState.FAILED, reason, finished_at=_now())
    return DeployState.FAILED


__all__ = ["EnvSource", "Environment", "FreezeOverride", "Outcome", "deploy", "recover_one", "recover_stale",
           "resolve_env", "resume_approved", "rollback", "serving", "weights"]
