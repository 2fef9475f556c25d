"""The approval gate before a deploy's first step: request, wait (holding no lease), decide, take over.

A gated deploy moves queued -> awaiting_approval with a request row that snapshots its policy, and waits
there without the (service, env) lease, so other runs go on. It proceeds once `required` distinct allowed
people approved and the wait after the last of them has passed; a reject, the timeout or a newer request for
the same (service, env) cancels it, the reason in the record and in an `approval.*` event.

Every decision is a row in the store, written under the deployment's row lock, so nothing about the gate
lives only in a process. The process waiting to run it (a CLI, a `shipyard serve` runner) heart-beats
its hold on the request; when it dies, whoever looks next (the daemon's approvals work, `shipyard
recover`) takes the hold over by compare-and-swap and runs the deployment when its gate opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from shipyard.config.durations import format_duration
from shipyard.domain.approvals import (
    APPROVE,
    REJECT,
    Policy,
    Verdict,
    approvals_that_count,
    granted_at,
    refusal,
    verdict,
)
from shipyard.domain.deployment import DeployState
from shipyard.domain.types import Revision
from shipyard.engine.environment import Environment, Outcome
from shipyard.engine.journal import Journal
from shipyard.errors import ApprovalRefused, BranchNotAllowed, NotFoundError, ShipyardError
from shipyard.notify.outbox import record_event
from shipyard.releases.git import git
from shipyard.store import Store
from shipyard.store import approvals as aq
from shipyard.store import checklists as cq
from shipyard.store import deployments as dq
from shipyard.store import leases as lq
from shipyard.store.models import ApprovalRequest, Deployment, QueueEntry
from shipyard.store.owner import owner_is_dead
from shipyard.store.sql import utcnow

POLL = 0.25          # seconds between looks at the request while waiting
BEAT = 5.0           # the holder's heartbeat
STALE_AFTER = 60.0   # a holder silent this long (another host, where death cannot be seen) is taken over
COMMENT_MAX = 1000


# ---- before anything is recorded ---------------------------------------------------------------------

async def check_branch(e: Environment, revision: Revision) -> None:
    """BranchNotAllowed unless the revision is on (reachable from) a branch the gate allows."""
    policy: Policy | None = e.settings.approvals
    if policy is None or not policy.branches:
        return
    repo = await e.settings.source.repo(fetch=False)
    out = await git("for-each-ref", "--contains", revision.sha, "--format=%(refname)", "refs/heads",
                    "refs/remotes/origin", cwd=repo)
    names = {r.removeprefix("refs/heads/").removeprefix("refs/remotes/origin/")
             for r in out.decode().split()}
    if not any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in policy.branches):
        s = e.settings
        raise BranchNotAllowed(f"{revision.short} ({revision.ref}) is on none of {', '.join(policy.branches)}: "
                               f"{s.service}/{s.env} deploys only revisions from those branches")


# ---- the request -------------------------------------------------------------------------------------

def gate_policy(e: Environment) -> Policy:
    """The env's approval policy, or for an env with only manual checklist items a gate of those alone (no
    approvals required, the checklists' timeout)."""
    return e.settings.approvals or Policy(required=0, approvers=None, wait=0.0, timeout=e.settings.checklist_timeout,
                                          self_approval=False)


def open_request(e: Environment, dep_id: str, revision: Revision) -> None:
    """Move the queued deployment to awaiting_approval, record its request, and cancel the older requests
    of this (service, env): the newest request is the one people are asked about."""
    policy = gate_policy(e)
    s = e.settings
    with e.store.session() as ses:
        aq.create_request(ses, dep_id, service=s.service, env=s.env, requested_by=e.actor, policy=policy,
                          holder=e.owner)
        dq.update_deployment(ses, dep_id, state=DeployState.AWAITING_APPROVAL, reason="awaiting approval")
        req = aq.get_request(ses, dep_id)
        assert req is not None
        who = ("anyone" if policy.approvers is None else ", ".join(policy.approvers))
        wait = f", then {format_duration(policy.wait)} of waiting" if policy.wait else ""
        message = (f"{s.service}/{s.env} {revision.short} needs {policy.required} approval"
                   f"{'s' if policy.required > 1 else ''} ({who}){wait}; expires {req.expires_at:%Y-%m-%d %H:%M} UTC")
        people = list(policy.approvers) if policy.approvers is not None else None
        data: dict[str, object] = {"required": policy.required, "approvers": people, "wait": policy.wait,
                                   "expires_at": req.expires_at.isoformat(), "requested_by": e.actor,
                                   "self_approval": policy.self_approval, "revision": revision.sha,
                                   "ref": revision.ref}
        # In the state change's transaction: whoever sees the row awaiting approval sees why, and people
        # are told (the outbox row) exactly when it starts to wait.
        if policy.required:
            record_event(ses, e.notifications, "approval.requested", service=s.service, env=s.env,
                         message=message, deployment_id=dep_id, data=data)
        asked = cq.pending_manual_pre(ses, dep_id)
        if asked:
            listed = cq.statements(ses, dep_id, asked)
            message = (f"{s.service}/{s.env} {revision.short} waits for its checklist: {'; '.join(listed)} "
                       f"(`shipyard checklist confirm {dep_id} NAME`); expires {req.expires_at:%Y-%m-%d %H:%M} UTC")
            data = {"items": asked, "expires_at": req.expires_at.isoformat(), "requested_by": e.actor,
                    "revision": revision.sha}
            record_event(ses, e.notifications, "checklist.requested", service=s.service, env=s.env,
                         message=message, deployment_id=dep_id, data=data)
    # After the commit, in a transaction of its own: of two requests made at once (on PostgreSQL neither
    # sees the other's uncommitted row), whichever looks last sees both, so exactly the newest survives.
    with e.store.session() as ses:
        rows = [d.id for d, _ in aq.awaiting(ses, service=s.service, env=s.env)]
        newest = rows[-1] if rows else dep_id
        for old in rows[:-1]:
            why = f"superseded by {newest} (a newer request for {s.service}/{s.env})"
            if close(ses, old, why) is not None:
                record_event(ses, e.notifications, "approval.superseded", service=s.service, env=s.env,
                             message=why, deployment_id=old, data={"reason": why, "by": newest})
    if e.listener is not None:
        e.listener("approval.requested", {"message": message, "deployment_id": dep_id, **data})


def close(ses: Session, dep_id: str, reason: str) -> Deployment | None:
    """Cancel a deployment still awaiting approval (and not already taking its lease; the caller records
    why in an event); None when it is past that (started, finished) and was left alone."""
    row = ses.get(Deployment, dep_id, with_for_update=True, populate_existing=True)
    if row is None or row.state != DeployState.AWAITING_APPROVAL:
        return None
    lease = lq.get_lease(ses, row.service, row.env)
    if lease is not None and lease.deployment_id == dep_id:
        return None                     # it holds the lease: starting now, undone by a rollback if need be
    dq.update_deployment(ses, dep_id, state=DeployState.CANCELLED, reason=reason)
    ses.execute(delete(QueueEntry).where(QueueEntry.deployment_id == dep_id)
                .execution_options(synchronize_session=False))
    return row


def expire(ses: Session, req: ApprovalRequest, notifications: Any) -> bool:
    """Cancel a request past its deadline without enough approvals, with its `approval.expired` event."""
    why = _expired_reason(req, cq.pending_manual_pre(ses, req.deployment_id))
    row = close(ses, req.deployment_id, why)
    if row is None:
        return False
    record_event(ses, notifications, "approval.expired", service=row.service, env=row.env, message=why,
                 deployment_id=row.id, data={"reason": why})
    return True


# ---- deciding ----------------------------------------------------------------------------------------

def decide(store: Store, dep_id: str, *, approver: str, decision: str = APPROVE, comment: str = "",
           via: str = "cli", nonce: str | None = None, notifications: Any = None) -> dict[str, Any]:
    """Record `approver`'s decision, or ApprovalRefused saying why it cannot count. A reject cancels the
    deployment at once; the approval that completes the count starts the wait timer."""
    if decision not in (APPROVE, REJECT):
        raise ValueError(f"decision must be approve or reject, not {decision!r}")
    comment = comment.strip()[:COMMENT_MAX]
    expired = False
    with store.session() as ses:
        row = ses.get(Deployment, dep_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise NotFoundError(f"no deployment {dep_id!r}")
        req = aq.get_request(ses, dep_id)
        if req is None:
            raise ApprovalRefused(f"{dep_id} has no approval gate ({row.env} needs no approval, or it was "
                                  "requested before the gate was configured)")
        state = DeployState(row.state)
        lease = lq.get_lease(ses, row.service, row.env)
        if state is not DeployState.AWAITING_APPROVAL or (lease is not None and lease.deployment_id == dep_id):
            now_is = "starting" if state is DeployState.AWAITING_APPROVAL else str(state).replace("_", " ")
            raise ApprovalRefused(f"{dep_id} is {now_is}" + (f" ({row.reason})" if row.reason and state.terminal
                                                             else "") + ": nothing to decide")
        if nonce is not None and aq.nonce_used(ses, nonce):
            raise ApprovalRefused("this link was used already: a link counts once")
        policy = aq.policy_of(req)
        if policy.required == 0 and decision == APPROVE:
            raise ApprovalRefused(f"{dep_id} needs no approval, only its checklist: `shipyard checklist confirm "
                                  f"{dep_id} NAME`")
        # The requester may always withdraw (reject) their own request; everything else follows the policy.
        withdraw = decision == REJECT and approver == req.requested_by
        why = None if withdraw else refusal(policy, req.requested_by, approver)
        if why:
            raise ApprovalRefused(why)
        decisions = aq.as_decisions(aq.list_decisions(ses, dep_id))
        now = utcnow()
        if verdict(policy, req.requested_by, decisions, req.requested_at, now,
                   len(cq.pending_manual_pre(ses, dep_id)))[0] is Verdict.EXPIRED:
            expired = expire(ses, req, notifications)
        else:
            counted = approvals_that_count(policy, req.requested_by, decisions)
            if decision == APPROVE and approver in counted:
                raise ApprovalRefused(f"{approver} already approved {dep_id}: one person counts once "
                                      f"({len(counted)} of {policy.required})")
            if not aq.add_decision(ses, dep_id, approver=approver, decision=decision, comment=comment, via=via,
                                   nonce=nonce, now=now):
                raise ApprovalRefused("this link was used already: a link counts once")
            return _recorded(ses, row, req, policy, approver, decision, comment, via, notifications)
    raise ApprovalRefused(f"{dep_id} {'expired' if expired else 'was closed'} before this decision: "
                          f"{_expired_reason(req)}")


def _recorded(ses: Session, row: Deployment, req: ApprovalRequest, policy: Policy, approver: str, decision: str,
              comment: str, via: str, notifications: Any) -> dict[str, Any]:
    dep_id = row.id
    base = {"actor": approver, "decision": decision, "comment": comment, "via": via}
    if decision == REJECT:
        reason = f"rejected by {approver}" + (f": {comment}" if comment else "")
        if close(ses, dep_id, reason) is not None:
            record_event(ses, notifications, "approval.rejected", service=row.service, env=row.env, message=reason,
                         deployment_id=dep_id, data={"reason": reason, **base})
        return {"id": dep_id, "state": str(DeployState.CANCELLED), "decision": decision, "approver": approver,
                "approved": [], "required": policy.required, "reason": reason}
    decisions = aq.as_decisions(aq.list_decisions(ses, dep_id))
    counted = approvals_that_count(policy, req.requested_by, decisions)
    record_event(ses, notifications, "approval.approved", service=row.service, env=row.env,
                 message=f"approved by {approver} ({min(len(counted), policy.required)} of {policy.required})"
                         + (f": {comment}" if comment else ""),
                 deployment_id=dep_id, data={**base, "count": len(counted), "required": policy.required})
    granted = granted_at(policy, req.requested_by, decisions)
    if granted is not None and req.granted_at is None:
        req.granted_at = granted
        ready = granted + timedelta(seconds=policy.wait)
        then = f"deploying after {format_duration(policy.wait)}" if policy.wait else "deploying now"
        record_event(ses, notifications, "approval.granted", service=row.service, env=row.env,
                     message=f"approved by {', '.join(counted)}; {then}", deployment_id=dep_id,
                     data={"approvers": counted, "wait": policy.wait, "ready_at": ready.isoformat()})
        ses.flush()
    return {"id": dep_id, "state": row.state, "decision": decision, "approver": approver, "approved": counted,
            "required": policy.required, "reason": None}


def _expired_reason(req: ApprovalRequest, checklist: list[str] | None = None) -> str:
    timeout = float(dict(req.policy)["timeout"])
    if checklist and (req.granted_at is not None or not dict(req.policy)["required"]):
        return f"checklist not confirmed within {format_duration(timeout)} (timeout): {', '.join(checklist)}"
    return f"not approved within {format_duration(timeout)} (timeout)"


def expire_due(store: Store, notifications: Any = None, now: datetime | None = None) -> list[str]:
    """Cancel every request past its deadline without enough approvals; their ids."""
    now = now or utcnow()
    done = []
    with store.session(readonly=True) as ses:
        due = [r.deployment_id for _, r in aq.awaiting(ses) if r.expires_at <= now and
               (r.granted_at is None or cq.pending_manual_pre(ses, r.deployment_id))]
    for dep_id in due:
        with store.session() as ses:
            req = aq.get_request(ses, dep_id)
            if req is not None and _verdict(ses, req, now)[0] is Verdict.EXPIRED and expire(ses, req, notifications):
                done.append(dep_id)
    return done


def status(store: Store, dep_id: str) -> dict[str, Any]:
    """The gate of one deployment as the API and the CLI show it: policy, decisions, verdict."""
    with store.session(readonly=True) as ses:
        row = dq.get_deployment(ses, dep_id)
        if row is None:
            raise NotFoundError(f"no deployment {dep_id!r}")
        req = aq.get_request(ses, dep_id)
        rows = aq.list_decisions(ses, dep_id)
        if req is None:
            return {"id": dep_id, "env": row.env, "state": row.state, "gate": None, "decisions": []}
        policy = aq.policy_of(req)
        v, until = _verdict(ses, req, utcnow())
        gate = {**policy.to_dict(), "requested_by": req.requested_by, "requested_at": req.requested_at,
                "expires_at": req.expires_at, "granted_at": req.granted_at,
                "approved": approvals_that_count(policy, req.requested_by, aq.as_decisions(rows)),
                "verdict": str(v) if row.state == DeployState.AWAITING_APPROVAL else None,
                "until": until, "holder": req.holder}
        return {"id": dep_id, "env": row.env, "state": row.state, "gate": gate,
                "decisions": [{"approver": r.approver, "decision": r.decision, "comment": r.comment, "via": r.via,
                               "at": r.at} for r in rows]}


# ---- waiting, and who waits ----------------------------------------------------------------------------

class TakenOver(ShipyardError):
    """Another process holds this deployment's wait now (this one was thought dead); it stops here."""


@asynccontextmanager
async def holding(store: Store, dep_id: str, holder: str) -> AsyncIterator[asyncio.Event]:
    """Heart-beat the hold on `dep_id`'s request while the block runs; the event is set if it was lost."""
    lost = asyncio.Event()

    async def beat() -> None:
        while True:
            await asyncio.sleep(BEAT)
            # The store away for a moment: try again at the next beat.
            with contextlib.suppress(ShipyardError), store.session() as ses:
                if not aq.beat(ses, dep_id, holder):
                    lost.set()
                    return

    task = asyncio.create_task(beat())
    try:
        yield lost
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def await_turn(e: Environment, journal: Journal, dep_id: str, lost: asyncio.Event) -> Outcome | None:
    """Wait until the gate opens (None: go on to the lease) or the deployment is cancelled (its Outcome)."""
    seen: tuple[Any, ...] = ()
    while True:
        if lost.is_set():
            raise TakenOver(f"{dep_id}: another process took over waiting for its approval; stopped here")
        with e.store.session(readonly=True) as ses:
            row = dq.get_deployment(ses, dep_id)
            req = aq.get_request(ses, dep_id)
            assert row is not None and req is not None
            state, reason, revision = DeployState(row.state), row.reason, row.revision
            decisions = aq.as_decisions(aq.list_decisions(ses, dep_id))
            holder = req.holder
            pending = cq.pending_manual_pre(ses, dep_id)
        if state is not DeployState.AWAITING_APPROVAL:
            return Outcome(dep_id, state, reason, revision)
        if holder != e.owner:
            raise TakenOver(f"{dep_id}: {holder} waits for its approval now; stopped here")
        policy = aq.policy_of(req)
        v, until = verdict(policy, req.requested_by, decisions, req.requested_at, utcnow(), len(pending))
        if v is Verdict.READY:
            return None
        if v is Verdict.EXPIRED:
            with e.store.session() as ses:
                live = aq.get_request(ses, dep_id)
                if live is not None:
                    expire(ses, live, e.notifications)
            continue
        now_seen = (v, len(decisions), len(pending))
        if now_seen != seen and e.listener is not None:
            counted = approvals_that_count(policy, req.requested_by, decisions)
            said = (f"waiting until {until:%H:%M:%S} UTC, then deploying" if v is Verdict.WAITING and until
                    else f"{len(counted)} of {policy.required} approved{': ' + ', '.join(counted) if counted else ''}"
                         f"; `shipyard approve {dep_id}`")
            if pending and (not policy.required or len(counted) >= policy.required):
                said = f"checklist to confirm: {', '.join(pending)}; `shipyard checklist confirm {dep_id} NAME`"
            e.listener("approval.waiting", {"message": said, "deployment_id": dep_id, "verdict": str(v),
                                            "approved": counted, "required": policy.required})
        seen = now_seen
        await asyncio.sleep(POLL)


def orphaned(store: Store, owner: str, *, service: str | None = None, env: str | None = None) -> list[str]:
    """Deployments awaiting approval whose holder died (or fell silent): theirs to take over."""
    now = utcnow()
    with store.session(readonly=True) as ses:
        rows = aq.awaiting(ses, service=service, env=env)
    out = []
    for _dep, req in rows:
        if req.holder == owner:
            continue
        silent = req.holder_beat_at is None or (now - req.holder_beat_at).total_seconds() > STALE_AFTER
        if req.holder is None or owner_is_dead(req.holder) or silent:
            out.append(req.deployment_id)
    return out


def is_ready(store: Store, dep_id: str) -> bool:
    """Whether the gate of `dep_id` is open now (approved, waited): a recover runs only those, never
    waiting on people itself."""
    with store.session(readonly=True) as ses:
        req = aq.get_request(ses, dep_id)
        if req is None:
            return False
        return _verdict(ses, req, utcnow())[0] is Verdict.READY


def _verdict(ses: Session, req: ApprovalRequest, now: datetime) -> tuple[Verdict, datetime | None]:
    """The gate's verdict with its decisions and the manual checklist items still to confirm."""
    return verdict(aq.policy_of(req), req.requested_by, aq.as_decisions(aq.list_decisions(ses, req.deployment_id)),
                   req.requested_at, now, len(cq.pending_manual_pre(ses, req.deployment_id)))


def take_over(e: Environment, dep_id: str) -> bool:
    """Hold `dep_id`'s wait from now on, if its holder is still the dead one read (compare-and-swap)."""
    with e.store.session() as ses:
        req = aq.get_request(ses, dep_id)
        if req is None or req.holder == e.owner:
            return req is not None
        previous = req.holder
        if not aq.take_over(ses, req, e.owner):
            return False
        dq.update_deployment(ses, dep_id, owner=e.owner)
    Journal(e.store, dep_id, e.settings.service, e.settings.env, e.listener, redactor=e.redactor,
            notifications=e.notifications).event(
        "approval.resumed", f"the wait for approval taken over from {previous} (it died)", previous_owner=previous,
        actor=e.actor)
    return True
