"""Release a group of services: waves in order, every member a normal deployment, one abort for all.

The group is recorded (queued, every member pending with its resolved revision) before anything moves,
then takes the (service, env) lease of every member, in sorted order, under its own id, and keeps them for
its whole duration: a plain deploy of a member queues behind the group as behind any run, and two groups
never wait for each other in a circle. Each member runs through engine.deployer like a plain deploy (its own
strategy, hooks, analysis and automatic rollback); the deployer only learns that the lease is the group's
(`Environment.group`) and links its rows to the member in the transaction that creates them.

One abort: the first member that fails or rolls back stops the release. Members of its wave still running
are cancelled and rolled back (as `shipyard recover` would: from what really exists), then every member
that succeeded is rolled back, last wave first (a traffic flip while its previous set is warm: the
ordinary rollback path), and members not yet started never start (groups.plan.abort_plan).

Crash-safe: a process killed at any point leaves the group unfinished with its owner dead; `recover_groups`
(run by `shipyard recover` before single runs) takes the leases over and finishes the group only when every
member already succeeded, and otherwise rolls the whole group back. Never half.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from shipyard.domain.deployment import DeployState
from shipyard.engine import deployer
from shipyard.engine.admission import admit_freeze, resolve_env
from shipyard.engine.environment import Environment
from shipyard.engine.freeze import FreezeOverride
from shipyard.engine.lease import hold_lease
from shipyard.engine.run import FAILPOINT_ENV
from shipyard.errors import LeaseHeldError, ReleaseGroupFailed, ShipyardError
from shipyard.groups.plan import GroupPlan, Member, abort_plan, group_outcome
from shipyard.releases.git import resolve_revision
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store import groups as gq
from shipyard.store import leases as lq
from shipyard.store.owner import owner_is_dead

EnvFor = Callable[[str], Environment]
"""service -> a fresh Environment for that member in the group's env (its live target and router)."""
Say = Callable[[str, str], None]
"""(service or "", message): one line of progress for whoever watches (the CLI prints it)."""

FINISHED = frozenset({DeployState.SUCCEEDED, DeployState.FAILED, DeployState.ROLLED_BACK, DeployState.CANCELLED})
_STATE_OF = {DeployState.SUCCEEDED: "succeeded", DeployState.ROLLED_BACK: "rolled_back",
             DeployState.FAILED: "failed", DeployState.CANCELLED: "cancelled"}


@dataclass(frozen=True)
class GroupOutcome:
    group_id: str
    state: str
    reason: str | None
    members: list[dict[str, Any]] = field(default_factory=list)
    env: str = ""

    def raise_for_state(self) -> None:
        if self.state != "succeeded":
            raise ReleaseGroupFailed(self.group_id, self.state, self.reason or "")


def _now() -> datetime:
    return datetime.now(UTC)


def _failpoint(name: str) -> None:
    """Crash tests kill the process at a group boundary (`group-before-wave:N`), as run.py does at steps."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _quiet(service: str, message: str) -> None:
    return None


def _waiting(say: Say, service: str, env: str) -> Callable[[int, str], None]:
    def waiting(pos: int, holder: str) -> None:
        say(service, f"queued at position {pos + 1} for {service}/{env} behind {holder}")
    return waiting


def _bound(env_for: Callable[[str, str], Environment], env: str) -> EnvFor:
    return lambda service: env_for(service, env)


# ---- the forward release -------------------------------------------------------------------------------

async def resolve_plan(plan: GroupPlan, envs: dict[str, Environment], override: FreezeOverride | None) -> GroupPlan:
    """Admission for the whole group before anything is recorded: every member's values resolve, its env
    is not frozen (or `override` covers it), and its ref names a revision (resolved to a sha once, so
    every member deploys exactly what was planned even if a branch moves meanwhile)."""
    members = []
    for m in plan.members:
        e = envs[m.service]
        await resolve_env(e)
        admit_freeze(e, override, "release")
        revision = await resolve_revision(e.settings.source, m.ref)
        members.append(replace(m, revision=revision.sha))
    return replace(plan, members=tuple(members))


async def release(store: Store, plan: GroupPlan, env_for: EnvFor, *, actor: str, owner: str, wait: bool = True,
                  override: FreezeOverride | None = None, promotion_id: str | None = None,
                  say: Say = _quiet, on_recorded: Callable[[str], None] | None = None) -> GroupOutcome:
    """Release `plan` (members' refs not yet resolved); returns how the group ended. `on_recorded(id)` is
    called once the group run is recorded (the API answers then)."""
    envs = {m.service: env_for(m.service) for m in plan.members}
    plan = await resolve_plan(plan, envs, override)
    with store.session() as ses:
        gid = gq.create_group(ses, name=plan.name, env=plan.env, plan=plan, actor=actor, owner=owner,
                              promotion_id=promotion_id).id
    for e in envs.values():
        e.group, e.owner, e.actor = gid, owner, actor
    if on_recorded is not None:
        on_recorded(gid)
    say("", f"{gid}: {plan.name} to {plan.env}, {len(plan.waves)} waves: "
            + " then ".join("+".join(m.service for m in w) for w in plan.waves))
    lost = asyncio.Event()
    started = False
    try:
        async with AsyncExitStack() as stack:
            for svc in plan.services():
                await stack.enter_async_context(hold_lease(store, svc, plan.env, gid, owner, wait=wait, lost=lost,
                                                           on_wait=_waiting(say, svc, plan.env)))
            with store.session() as ses:
                gq.set_group(ses, gid, "in_progress", started_at=_now())
            started = True
            return await _waves(store, gid, plan, envs, lost, override, say)
    except (ShipyardError, OSError) as exc:
        if started:
            raise
        # Refused before a member started (a lease held with --no-wait): nothing moved.
        with store.session() as ses:
            for m in plan.members:
                gq.set_member(ses, gid, m.service, "cancelled", "the release did not start")
            gq.set_group(ses, gid, "cancelled", str(exc), finished_at=_now())
        raise


async def _waves(store: Store, gid: str, plan: GroupPlan, envs: dict[str, Environment], lost: asyncio.Event,
                 override: FreezeOverride | None, say: Say) -> GroupOutcome:
    failure: str | None = None
    for n, wave in enumerate(plan.waves):
        _failpoint(f"group-before-wave:{n}")
        if lost.is_set():
            raise ShipyardError(f"{gid}: lost a member's lease to another process; stopped here")
        say("", f"wave {n + 1}: {', '.join(m.service for m in wave)}")
        failure = await _wave(store, gid, wave, envs, override, say, lost)
        if failure is not None:
            break
    if failure is None:
        _failpoint(f"group-before-wave:{len(plan.waves)}")    # after the last wave, before the group's end
        with store.session() as ses:
            gq.set_group(ses, gid, "succeeded", finished_at=_now())
        say("", f"{gid} succeeded")
        return outcome(store, gid)
    return await abort(store, gid, plan, envs, failure, override, say)


async def _wave(store: Store, gid: str, wave: list[Member], envs: dict[str, Environment],
                override: FreezeOverride | None, say: Say, lost: asyncio.Event | None = None) -> str | None:
    """Deploy the wave's members in parallel. The first `deploy.failed` of a member stops the others at
    once (while that member still rolls itself back): they are cancelled and rolled back beside it, so the
    whole wave is back as soon as its slowest rollback is. Returns why the wave failed, or None."""
    failed = asyncio.Event()
    who: list[str] = []
    tasks: dict[Any, Member] = {}
    for m in wave:
        _watch(envs[m.service], m.service, failed, who)
        tasks[asyncio.create_task(_member(store, gid, m, envs[m.service], override, say))] = m
    signal_task = asyncio.ensure_future(failed.wait())
    lost_task = asyncio.ensure_future((lost or asyncio.Event()).wait())
    pending: set[asyncio.Task[Any]] = set(tasks)
    failure: str | None = None
    try:
        while pending and failure is None and not failed.is_set():
            done, pending = await asyncio.wait(pending | {signal_task, lost_task},
                                               return_when=asyncio.FIRST_COMPLETED)
            pending -= {signal_task, lost_task}
            members_done = done - {signal_task, lost_task}
            if lost_task in done or any(isinstance(t.exception(), LeaseHeldError) for t in members_done):
                # Another process took a member's lease over (it judged this one dead), seen by the heartbeat
                # or by the member's own lease check first: touch nothing more; the group stays in progress
                # for the one that took it (as engine.deployer._drive does).
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                raise ShipyardError(f"{gid}: lost a member's lease to another process; stopped here")
            for task in members_done:
                why = task.result()
                if why is not None and failure is None:
                    failure = f"{tasks[task].service}: {why}"
    finally:
        signal_task.cancel()
        lost_task.cancel()
    if failure is None and not failed.is_set():
        return None
    failing = [t for t in pending if tasks[t].service in who]
    siblings = [t for t in pending if t not in failing]
    for task in siblings:       # still deploying: stopped here, rolled back beside the failing member
        task.cancel()
    await asyncio.gather(*siblings, return_exceptions=True)
    first = who[0] if who else (failure or "a member").split(":")[0]
    reason = f"aborted: {first} failed"
    ends = await asyncio.gather(*failing, *(_finish(store, gid, envs[tasks[t].service], reason, say)
                                            for t in siblings))
    for task, why in zip(failing, ends, strict=False):
        if why is not None and failure is None:
            failure = f"{tasks[task].service}: {why}"
    return failure or f"{first}: failed"


def _watch(e: Environment, service: str, failed: asyncio.Event, who: list[str]) -> None:
    """Learn of a member's failure from its `deploy.failed` event, before its own rollback has finished."""
    inner = e.listener

    def listener(kind: str, data: dict[str, Any]) -> None:
        if kind == "deploy.failed" and not failed.is_set():
            who.append(service)
            failed.set()
        if inner is not None:
            inner(kind, data)
    e.listener = listener


async def _member(store: Store, gid: str, m: Member, e: Environment, override: FreezeOverride | None,
                  say: Say) -> str | None:
    """One member's deployment; returns None when it succeeded, else why not (its state is recorded)."""
    say(m.service, f"deploying {m.revision[:8]} ({m.ref})")
    try:
        out = await deployer.deploy(e, m.revision, override=override)
    except LeaseHeldError:
        raise       # the group no longer holds this member's lease: not the member's failure (see _wave)
    except (ShipyardError, OSError) as exc:
        with store.session() as ses:
            gq.set_member(ses, gid, m.service, "failed", str(exc))
        say(m.service, f"refused: {exc}")
        return str(exc)
    state = _STATE_OF.get(out.state, "failed")
    with store.session() as ses:
        gq.set_member(ses, gid, m.service, state, out.reason)
    say(m.service, f"{out.deployment_id} {out.state}" + (f": {out.reason}" if out.reason else ""))
    return None if out.state is DeployState.SUCCEEDED else f"{out.deployment_id} {out.state}: {out.reason}"


# ---- the abort -----------------------------------------------------------------------------------------

async def abort(store: Store, gid: str, plan: GroupPlan, envs: dict[str, Environment], failure: str,
                override: FreezeOverride | None, say: Say) -> GroupOutcome:
    """Undo the group: unfinished members rolled back, succeeded ones flipped back last wave first, members
    never started recorded cancelled. Idempotent: recovery calls it again after a crash mid-abort."""
    reason = f"aborted: {failure}"
    with store.session() as ses:
        gq.set_group(ses, gid, "aborting", reason)
    say("", f"{gid} {reason}; rolling back")
    states = sync_members(store, gid)
    steps = abort_plan(plan, states)
    with store.session() as ses:
        for svc in steps.cancel:
            gq.set_member(ses, gid, svc, "cancelled", f"never started: {reason}")
    for wave in reversed(plan.waves):
        names = [m.service for m in sorted(wave, key=lambda m: -m.position)]
        await asyncio.gather(*(_finish(store, gid, envs[s], reason, say) for s in names if s in steps.finish))
        states = sync_members(store, gid)
        await asyncio.gather(*(_flip_back(store, gid, envs[s], override, say) for s in names
                               if states.get(s) == "succeeded"))
    final = group_outcome(sync_members(store, gid))
    with store.session() as ses:
        gq.set_group(ses, gid, final, reason, finished_at=_now())
    say("", f"{gid} {final}")
    return outcome(store, gid)


async def _finish(store: Store, gid: str, e: Environment, reason: str, say: Say) -> None:
    """A member's deployment the abort (or a crash) stopped mid-run: rolled back from what really runs."""
    svc = e.settings.service
    with store.session(readonly=True) as ses:
        dep_id = next((m.deployment_id for m in gq.members(ses, gid) if m.service == svc), None)
    if dep_id is None:
        with store.session() as ses:
            gq.set_member(ses, gid, svc, "cancelled", f"never started: {reason}")
        return
    try:
        out = await deployer.recover_one(e, dep_id, why=f"stopped by the release group: {reason}")
    except (ShipyardError, OSError) as exc:
        with store.session() as ses:
            gq.set_member(ses, gid, svc, "rollback_failed", str(exc))
        return
    if out is not None:
        say(svc, f"{dep_id} {out.state}")
    sync_members(store, gid)


async def _flip_back(store: Store, gid: str, e: Environment, override: FreezeOverride | None, say: Say) -> None:
    """A member that succeeded goes back to the revision it replaced: the ordinary rollback (a traffic flip
    while the previous set is warm, else a redeploy of that revision)."""
    svc = e.settings.service
    with store.session(readonly=True) as ses:
        member = next(m for m in gq.members(ses, gid) if m.service == svc)
        dep = dq.get_deployment(ses, member.deployment_id) if member.deployment_id else None
        undo = dq.get_deployment(ses, member.rollback_id) if member.rollback_id else None
        previous = dep.previous_revision if dep is not None else None
        undo_state = DeployState(undo.state) if undo is not None else None
        dep_id, undo_id = member.deployment_id, member.rollback_id
    if dep_id is None or previous is None or previous == member.revision:
        why = "no previous revision to go back to" if previous is None else "it already served this revision"
        with store.session() as ses:
            gq.set_member(ses, gid, svc, "unchanged", f"kept: {why}")
        return
    try:
        if undo_id is not None and undo_state is not None and undo_state not in FINISHED:
            await deployer.recover_one(e, undo_id, why="the release group's rollback was interrupted")
        target, last = deployer.rollback_target(e)
        if (target, last) == (previous, dep_id):
            out = await deployer.rollback(e, override=override)
        else:       # history moved on (should not, under the group's lease): go to `previous` explicitly
            out = await deployer.deploy(e, previous, kind="rollback", rollback_of=dep_id, override=override)
    except (ShipyardError, OSError) as exc:
        with store.session() as ses:
            gq.set_member(ses, gid, svc, "rollback_failed", str(exc))
        say(svc, f"rollback failed: {exc}")
        return
    ok = out.state is DeployState.SUCCEEDED
    with store.session() as ses:
        gq.set_member(ses, gid, svc, "rolled_back" if ok else "rollback_failed",
                      f"rolled back by {out.deployment_id}" if ok else f"{out.deployment_id} {out.state}: {out.reason}")
    say(svc, f"back on {previous[:8]} ({out.deployment_id})" if ok else f"rollback {out.deployment_id} {out.state}")


def sync_members(store: Store, gid: str) -> dict[str, str]:
    """Member states brought in line with their deployments' rows (a crash can land between a deployment's
    end and the member's update), and returned by service."""
    out: dict[str, str] = {}
    with store.session() as ses:
        for m in gq.members(ses, gid):
            state = m.state
            dep = dq.get_deployment(ses, m.deployment_id) if m.deployment_id else None
            undo = dq.get_deployment(ses, m.rollback_id) if m.rollback_id else None
            if undo is not None and DeployState(undo.state) is DeployState.SUCCEEDED:
                state = "rolled_back"
            elif dep is not None and state in ("pending", "running", "succeeded"):
                ds = DeployState(dep.state)
                state = _STATE_OF.get(ds, "running") if ds in FINISHED else "running"
            if state != m.state:
                gq.set_member(ses, gid, m.service, state)
            out[m.service] = state
    return out


def outcome(store: Store, gid: str) -> GroupOutcome:
    with store.session(readonly=True) as ses:
        row = gq.get_group(ses, gid)
        assert row is not None
        return GroupOutcome(gid, row.state, row.reason, gq.member_dicts(gq.members(ses, gid)), row.env)


def stored_plan(store: Store, gid: str) -> GroupPlan:
    """The plan of a recorded group run, as it was made (revisions resolved)."""
    with store.session(readonly=True) as ses:
        row = gq.get_group(ses, gid)
        assert row is not None
        members = tuple(Member(m.service, m.wave, m.position, m.ref, m.revision) for m in gq.members(ses, gid))
        return GroupPlan(row.name, row.env, members)


# ---- recovery ------------------------------------------------------------------------------------------

async def recover_group(store: Store, gid: str, env_for: EnvFor, *, owner: str, actor: str,
                        say: Say = _quiet) -> GroupOutcome | None:
    """Finish (every member already succeeded) or roll back the whole group run `gid` whose owner died;
    None when its owner lives or another live run holds a member's lease (not ours to touch)."""
    with store.session(readonly=True) as ses:
        row = gq.get_group(ses, gid)
        if row is None or row.state not in ("queued", "in_progress", "aborting"):
            return None
        dead_owner, state = row.owner, row.state
    plan = stored_plan(store, gid)
    if dead_owner == owner or (dead_owner and not owner_is_dead(dead_owner) and _leases_live(store, gid, plan)):
        return None
    if state == "queued":                # died waiting for leases: nothing of it ran
        with store.session() as ses:
            for svc in plan.services():
                lq.release(ses, svc, plan.env, gid)
                gq.set_member(ses, gid, svc, "cancelled", f"owner {dead_owner} died before the release started")
            gq.set_group(ses, gid, "cancelled", f"owner {dead_owner} died while waiting for the members' leases",
                         finished_at=_now())
        return outcome(store, gid)
    envs = {m.service: env_for(m.service) for m in plan.members}
    for e in envs.values():
        e.group, e.owner, e.actor = gid, owner, actor
    try:
        async with AsyncExitStack() as stack:
            for svc in plan.services():
                await stack.enter_async_context(hold_lease(store, svc, plan.env, gid, owner, wait=False))
            with store.session() as ses:
                gq.set_group(ses, gid, state, owner=owner)
            states = sync_members(store, gid)
            if state == "in_progress" and all(st == "succeeded" for st in states.values()):
                with store.session() as ses:
                    gq.set_group(ses, gid, "succeeded", "finished by recover (every member had succeeded)",
                                 finished_at=_now())
                return outcome(store, gid)
            with store.session(readonly=True) as ses:
                why = gq.get_group(ses, gid).reason if state == "aborting" else None  # type: ignore[union-attr]
            failure = (why or "").removeprefix("aborted: ") or f"owner {dead_owner} died; rolled back by recover"
            return await abort(store, gid, plan, envs, failure, None, say)
    except LeaseHeldError:
        return None


def _leases_live(store: Store, gid: str, plan: GroupPlan) -> bool:
    """Whether the group still heart-beats one of its leases: an owner on another host cannot be inspected,
    so there, as for a deploy, only the expiry of its leases says it died. A group that held none yet (it
    waits for the first) counts as live."""
    with store.session(readonly=True) as ses:
        held = [lease for svc in plan.services() if (lease := lq.get_lease(ses, svc, plan.env)) is not None
                and lease.deployment_id == gid]
    return not held or any(not lq.lease_is_stale(lease) for lease in held)


async def recover_groups(store: Store, env_for: Callable[[str, str], Environment], *, owner: str, actor: str,
                         say: Say = _quiet) -> list[GroupOutcome]:
    """Every unfinished group run whose owner died, finished or rolled back whole (`shipyard recover`)."""
    with store.session(readonly=True) as ses:
        pending = [(g.id, g.env) for g in gq.find_unfinished(ses)]
    results = []
    for gid, env in pending:
        done = await recover_group(store, gid, _bound(env_for, env), owner=owner, actor=actor, say=say)
        if done is not None:
            results.append(done)
    return results
