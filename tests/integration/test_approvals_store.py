"""The approval gate's records on SQLite and PostgreSQL: decisions under the deployment's lock (two distinct
people, the same one twice, the requester, a stranger, a reject, a run already taking its lease), a link's
nonce used once even by two racing requests, the timeout, the hold taken over once from a dead holder, and
the rows going with their deployment."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from typing import Any

import pytest

from shipyard.domain.approvals import Policy
from shipyard.engine.approvals import decide, expire_due, orphaned, status
from shipyard.engine.lease import acquire
from shipyard.errors import ApprovalRefused, NotFoundError
from shipyard.store import Store, create_deployment
from shipyard.store import approvals as aq
from shipyard.store import events as eq
from shipyard.store.models import ApprovalDecision, ApprovalRequest, Deployment
from shipyard.store.owner import current_owner
from shipyard.testing.wait import wait_until

POLICY = Policy(required=2, approvers=("alice", "bob", "carol"), wait=0, timeout=3600, self_approval=False)


def gated(store: Store, dep_id: str = "d1", policy: Policy = POLICY, holder: str | None = None,
          by: str = "dave") -> None:
    with store.session() as s:
        create_deployment(s, service="api", env="prod", revision="a" * 40, strategy="rolling", actor=by,
                          state="awaiting_approval", deployment_id=dep_id)
        aq.create_request(s, dep_id, service="api", env="prod", requested_by=by, policy=policy,
                          holder=holder or current_owner())


def state(store: Store, dep_id: str = "d1") -> tuple[str, str | None]:
    with store.session(readonly=True) as s:
        row = s.get(Deployment, dep_id, populate_existing=True)
        assert row is not None
        return row.state, row.reason


def kinds(store: Store, dep_id: str = "d1") -> list[str]:
    with store.session(readonly=True) as s:
        return [e.kind for e in eq.list_events(s, deployment_id=dep_id, newest_first=False)]


def test_two_distinct_approvers_and_everyone_else_refused(store: Store) -> None:
    gated(store)
    assert decide(store, "d1", approver="alice", comment="ok")["approved"] == ["alice"]
    for who, why in (("alice", "already approved d1: one person counts once (1 of 2)"),
                     ("mallory", "mallory is not an approver here")):
        with pytest.raises(ApprovalRefused, match=re.escape(why)):
            decide(store, "d1", approver=who)
    assert status(store, "d1")["gate"]["verdict"] == "pending"
    done = decide(store, "d1", approver="carol", via="api")
    assert done["approved"] == ["alice", "carol"] and done["state"] == "awaiting_approval"
    shown = status(store, "d1")
    assert shown["gate"]["verdict"] == "ready" and shown["gate"]["granted_at"] is not None
    assert [(d["approver"], d["decision"], d["via"], d["comment"]) for d in shown["decisions"]] == [
        ("alice", "approve", "cli", "ok"), ("carol", "approve", "api", "")]
    # Approved and waiting for its turn: a reject still cancels it (it has not started).
    decide(store, "d1", approver="bob", decision="reject", comment="not today")
    assert state(store) == ("cancelled", "rejected by bob: not today")
    assert kinds(store) == ["approval.approved", "approval.approved", "approval.granted", "approval.rejected"]
    with pytest.raises(ApprovalRefused, match="is cancelled"):
        decide(store, "d1", approver="alice")
    with pytest.raises(NotFoundError):
        decide(store, "nope", approver="alice")
    gated(store, "own", by="bob")
    with pytest.raises(ApprovalRefused, match="bob requested this deploy and may not approve it"):
        decide(store, "own", approver="bob")
    decide(store, "own", approver="bob", decision="reject", comment="withdrawn")     # but may withdraw it
    assert state(store, "own") == ("cancelled", "rejected by bob: withdrawn")


def test_a_run_taking_its_lease_is_past_deciding_and_an_ungated_one_never_was(store: Store) -> None:
    gated(store)
    import asyncio

    asyncio.run(acquire(store, "api", "prod", "d1", current_owner(), wait=False))
    with pytest.raises(ApprovalRefused, match="d1 is starting"):
        decide(store, "d1", approver="bob", decision="reject")
    assert state(store)[0] == "awaiting_approval"
    with store.session() as s:
        create_deployment(s, service="api", env="stg", revision="b" * 40, strategy="rolling", actor="dave",
                          deployment_id="plain")
    with pytest.raises(ApprovalRefused, match="no approval gate"):
        decide(store, "plain", approver="alice")


def test_a_link_counts_once_even_when_two_requests_race(store: Store) -> None:
    gated(store)
    decide(store, "d1", approver="alice", via="link", nonce="n-1")
    with pytest.raises(ApprovalRefused, match="used already"):
        decide(store, "d1", approver="bob", via="link", nonce="n-1")
    gated(store, "d2")
    results: list[Any] = []
    barrier = threading.Barrier(2)

    def use(who: str) -> None:
        barrier.wait()
        try:
            results.append(decide(store, "d2", approver=who, via="link", nonce="n-2"))
        except ApprovalRefused as exc:
            results.append(exc)

    threads = [threading.Thread(target=use, args=(who,)) for who in ("bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(type(r).__name__ for r in results) == ["ApprovalRefused", "dict"], results
    with store.session(readonly=True) as s:
        assert len(aq.list_decisions(s, "d2")) == 1


def test_the_timeout_cancels_with_its_reason(store: Store) -> None:
    gated(store, policy=Policy(required=1, approvers=None, wait=0, timeout=1, self_approval=False))
    gated(store, "d2")
    wait_until(lambda: expire_due(store), 15, "the request to expire", interval=0.1)
    assert state(store) == ("cancelled", "not approved within 1s (timeout)")
    assert state(store, "d2")[0] == "awaiting_approval"
    assert kinds(store) == ["approval.expired"]
    with pytest.raises(ApprovalRefused, match="is cancelled"):
        decide(store, "d1", approver="alice")


def _dead_owner() -> str:
    proc = subprocess.Popen(["true"])
    proc.wait(10)
    return f"{socket.gethostname()}:{proc.pid}:0"


def test_a_dead_holder_is_taken_over_once_and_the_rows_go_with_the_deployment(store: Store) -> None:
    dead = _dead_owner()
    gated(store, holder=dead)
    gated(store, "alive")
    me = current_owner()
    assert orphaned(store, me) == ["d1"]
    assert orphaned(store, "elsewhere:1:1") == ["d1"]            # the live holder's own run is never listed
    with store.session(readonly=True) as s:
        seen = aq.get_request(s, "d1")
    assert seen is not None
    with store.session() as s:
        assert aq.take_over(s, seen, "first:1:1")
    with store.session() as s:
        assert not aq.take_over(s, seen, "second:2:2"), "a second contender with the same stale read loses"
        assert not aq.beat(s, "d1", dead) and aq.beat(s, "d1", "first:1:1")
    decide(store, "d1", approver="alice")
    with store.session() as s:
        s.delete(s.get(Deployment, "d1"))
    with store.session(readonly=True) as s:
        assert s.get(ApprovalRequest, "d1") is None
        assert s.query(ApprovalDecision).filter_by(deployment_id="d1").count() == 0
