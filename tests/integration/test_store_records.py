"""Deployments, steps and events on real SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from shipyard.domain import DeployState, StepState
from shipyard.errors import InvalidTransition, StoreError
from shipyard.store import (
    Store,
    add_event,
    create_deployment,
    find_unfinished,
    finish_step,
    get_deployment,
    get_step,
    last_succeeded,
    list_deployments,
    list_events,
    list_steps,
    start_step,
    succeeded_history,
    unique_deployment_id,
    update_deployment,
)
from shipyard.store.models import Deployment
from shipyard.store.steps import OUTPUT_LIMIT

T0 = datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=UTC)
SHA = "0123456789abcdef0123456789abcdef01234567"


def make(store: Store, n: int = 0, **kw: object) -> Deployment:
    args: dict = {"service": "api", "env": "dev", "revision": SHA, "strategy": "rolling", "actor": "alice",
                  "now": T0 + timedelta(minutes=n)}
    args.update(kw)
    with store.session() as s:
        return create_deployment(s, **args)


def test_create_and_get(store: Store) -> None:
    plan = [{"kind": "start", "total": 2}, {"kind": "wait_healthy"}]
    dep = make(store, ref="main", plan=plan, previous_revision="f" * 40)
    assert dep.id == "deploy-20240501-093000-01234567"
    with store.session(readonly=True) as s:
        got = get_deployment(s, dep.id)
    assert got is not None
    assert (got.service, got.env, got.kind, got.state, got.ref) == ("api", "dev", "deploy", "queued", "main")
    assert got.plan == plan
    assert got.previous_revision == "f" * 40
    assert got.created_at == T0 and got.updated_at == T0
    assert got.started_at is None and got.finished_at is None and got.owner is None
    with store.session() as s:
        assert get_deployment(s, "deploy-nope") is None


def test_same_second_same_sha_gets_suffix(store: Store) -> None:
    ids = [make(store).id for _ in range(3)]
    base = "deploy-20240501-093000-01234567"
    assert ids == [base, f"{base}-2", f"{base}-3"]
    with store.session() as s:
        assert unique_deployment_id(s, base) == f"{base}-4"
        assert unique_deployment_id(s, "deploy-other") == "deploy-other"


def test_explicit_id_clash_is_an_error(store: Store) -> None:
    make(store, deployment_id="deploy-x")
    with pytest.raises(StoreError, match="already exists"):
        make(store, deployment_id="deploy-x")


def test_lifecycle_stamps_times(store: Store) -> None:
    dep = make(store)
    with store.session() as s:
        running = update_deployment(s, dep.id, state=DeployState.IN_PROGRESS, owner="h:1:2",
                                    now=T0 + timedelta(seconds=5))
    assert running.state == "in_progress" and running.owner == "h:1:2"
    assert running.started_at == T0 + timedelta(seconds=5) and running.finished_at is None
    with store.session() as s:
        done = update_deployment(s, dep.id, state="succeeded", owner=None, reason="all healthy",
                                 now=T0 + timedelta(seconds=60))
    assert done.finished_at == T0 + timedelta(seconds=60)
    with store.session() as s:
        got = get_deployment(s, dep.id)
    assert got is not None
    assert (got.state, got.owner, got.reason) == ("succeeded", None, "all healthy")
    assert got.started_at == T0 + timedelta(seconds=5)
    assert got.updated_at == T0 + timedelta(seconds=60)


def test_invalid_transition_raises_and_changes_nothing(store: Store) -> None:
    dep = make(store)
    with pytest.raises(InvalidTransition), store.session() as s:
        update_deployment(s, dep.id, state=DeployState.SUCCEEDED)
    with store.session() as s:
        got = get_deployment(s, dep.id)
        assert got is not None and got.state == "queued"
        update_deployment(s, dep.id, state="cancelled")
    with pytest.raises(InvalidTransition), store.session() as s:
        update_deployment(s, dep.id, state="in_progress")


def test_context_round_trips(store: Store) -> None:
    """The engine's resume context (instance ids, routed addresses) survives as JSON."""
    dep = make(store, context={"old": ["i-1"], "routed": ["127.0.0.1:9001"]})
    with store.session() as s:
        update_deployment(s, dep.id, context={"old": ["i-1"], "new": ["i-2"]})
    with store.session() as s:
        got = get_deployment(s, dep.id)
        assert got is not None and got.context == {"old": ["i-1"], "new": ["i-2"]}
        update_deployment(s, dep.id, context=None)
    assert make(store, 1).context is None


def test_update_unknown_deployment(store: Store) -> None:
    with pytest.raises(StoreError, match="no deployment"), store.session() as s:
        update_deployment(s, "deploy-missing", reason="x")


def test_list_filters_and_orders_newest_first(store: Store) -> None:
    a = make(store, 0)
    b = make(store, 1, env="prod")
    c = make(store, 2, service="web")
    d = make(store, 3)
    with store.session() as s:
        update_deployment(s, d.id, state="in_progress")
        assert [x.id for x in list_deployments(s)] == [d.id, c.id, b.id, a.id]
        assert [x.id for x in list_deployments(s, service="api")] == [d.id, b.id, a.id]
        assert [x.id for x in list_deployments(s, service="api", env="dev")] == [d.id, a.id]
        assert [x.id for x in list_deployments(s, state="queued", limit=2)] == [c.id, b.id]
        assert [x.id for x in list_deployments(s, state=["in_progress", "cancelled"])] == [d.id]
        assert list_deployments(s, kind="rollback") == []


def test_last_succeeded_and_the_one_before(store: Store) -> None:
    ids = []
    for n, sha in enumerate(["a" * 40, "b" * 40, "c" * 40, "d" * 40]):
        dep = make(store, n, revision=sha)
        with store.session() as s:
            update_deployment(s, dep.id, state="in_progress", now=T0 + timedelta(minutes=n, seconds=1))
            end = "failed" if sha[0] == "c" else "succeeded"
            update_deployment(s, dep.id, state=end, now=T0 + timedelta(minutes=n, seconds=30))
        ids.append(dep.id)
    with store.session() as s:
        assert [d.revision[0] for d in succeeded_history(s, "api", "dev", limit=5)] == ["d", "b", "a"]
        current, before = last_succeeded(s, "api", "dev"), last_succeeded(s, "api", "dev", offset=1)
        assert current is not None and current.id == ids[3]
        assert before is not None and before.id == ids[1]
        assert last_succeeded(s, "api", "dev", offset=3) is None
        assert last_succeeded(s, "api", "prod") is None
        # Rolling back the current one makes the previous one current again.
        update_deployment(s, ids[3], state="rolling_back")
        update_deployment(s, ids[3], state="rolled_back")
        current = last_succeeded(s, "api", "dev")
        assert current is not None and current.id == ids[1]


def test_find_unfinished(store: Store) -> None:
    queued = make(store, 0)
    running = make(store, 1, env="prod")
    done = make(store, 2, service="web")
    waiting = make(store, 3, service="web")
    with store.session() as s:
        update_deployment(s, running.id, state="in_progress")
        update_deployment(s, done.id, state="cancelled")
        update_deployment(s, waiting.id, state="awaiting_approval")
        assert [d.id for d in find_unfinished(s)] == [queued.id, running.id]
        assert [d.id for d in find_unfinished(s, env="prod")] == [running.id]
        assert [d.id for d in find_unfinished(s, service="web", states=["awaiting_approval"])] == [waiting.id]


def test_steps_ordered_by_phase_then_index(store: Store) -> None:
    dep = make(store)
    with store.session() as s:
        for phase, idx in [("rollback", 0), ("deploy", 2), ("deploy", 0), ("rollback", 1), ("deploy", 1)]:
            step = start_step(s, dep.id, phase, idx, "route", f"{phase} {idx}", detail={"n": idx})
            finish_step(s, step.id, StepState.SUCCEEDED)
        order = [(st.phase, st.idx) for st in list_steps(s, dep.id)]
        assert order == [("deploy", 0), ("deploy", 1), ("deploy", 2), ("rollback", 0), ("rollback", 1)]
        assert [st.idx for st in list_steps(s, dep.id, phase="rollback")] == [0, 1]


def test_step_start_finish_and_output_cap(store: Store) -> None:
    dep = make(store)
    with store.session() as s:
        step = start_step(s, dep.id, "deploy", 0, "hook", "hook before_install", now=T0)
    assert (step.state, step.started_at, step.ended_at) == ("running", T0, None)
    output = "x" * (OUTPUT_LIMIT * 2) + "\x00the end"
    with store.session() as s:
        finish_step(s, step.id, "failed", output=output, error="exit 3", detail={"code": 3},
                    now=T0 + timedelta(seconds=2))
    with store.session() as s:
        got = get_step(s, step.id)
    assert got is not None
    assert (got.state, got.error, got.detail) == ("failed", "exit 3", {"code": 3})
    assert got.ended_at == T0 + timedelta(seconds=2)
    assert got.output is not None and len(got.output.encode()) <= OUTPUT_LIMIT
    assert got.output.endswith("\ufffdthe end")
    with pytest.raises(InvalidTransition, match="already failed"), store.session() as s:
        finish_step(s, step.id, "succeeded")


def test_restarting_a_step_reuses_its_row(store: Store) -> None:
    """A resumed run starts the step it died in again: still one row for (deployment, phase, idx)."""
    dep = make(store)
    with store.session() as s:
        first = start_step(s, dep.id, "deploy", 0, "start", "start new instances", now=T0)
    with store.session() as s:
        again = start_step(s, dep.id, "deploy", 0, "start", "start new instances",
                           now=T0 + timedelta(minutes=1))
        assert again.id == first.id and again.started_at == T0 + timedelta(minutes=1)
        assert len(list_steps(s, dep.id)) == 1


def test_events_filtering(store: Store) -> None:
    dep = make(store)
    other = make(store, 1, env="prod")
    with store.session() as s:
        add_event(s, "deploy.started", service="api", env="dev", deployment_id=dep.id, at=T0)
        add_event(s, "step.succeeded", service="api", env="dev", deployment_id=dep.id,
                  data={"idx": 0}, at=T0 + timedelta(seconds=1))
        add_event(s, "rollback.started", service="api", env="dev", deployment_id=dep.id,
                  at=T0 + timedelta(seconds=2))
        add_event(s, "rollback.completed", service="api", env="dev", deployment_id=dep.id,
                  message="back on aaaa", at=T0 + timedelta(seconds=3))
        add_event(s, "deploy.started", service="api", env="prod", deployment_id=other.id, at=T0)
        add_event(s, "alarm.alarm", service="api", env="prod", at=T0 + timedelta(seconds=9))
    with store.session(readonly=True) as s:
        kinds = [e.kind for e in list_events(s, deployment_id=dep.id)]
        assert kinds == ["rollback.completed", "rollback.started", "step.succeeded", "deploy.started"]
        timeline = list_events(s, deployment_id=dep.id, newest_first=False, limit=2)
        assert [e.kind for e in timeline] == ["deploy.started", "step.succeeded"]
        assert timeline[1].data == {"idx": 0}
        assert [e.kind for e in list_events(s, kind="rollback.*")] == ["rollback.completed",
                                                                       "rollback.started"]
        prod = list_events(s, service="api", env="prod")
        assert [e.kind for e in prod] == ["alarm.alarm", "deploy.started"]
        assert prod[0].deployment_id is None
        first_id = min(e.id for e in list_events(s))
        assert len(list_events(s, after_id=first_id)) == 5
        assert len(list_events(s, since=T0 + timedelta(seconds=2))) == 3


def test_times_are_aware_utc_on_every_backend(store: Store) -> None:
    seoul = timezone(timedelta(hours=9))
    local = datetime(2024, 5, 1, 18, 30, 0, 123456, tzinfo=seoul)
    dep = make(store, now=local)
    with store.session() as s:
        add_event(s, "deploy.queued", service="api", env="dev", deployment_id=dep.id)
    with store.session() as s:
        got = get_deployment(s, dep.id)
        events = list_events(s)
    assert got is not None
    for value in (got.created_at, got.updated_at, events[0].at):
        assert value.tzinfo is UTC
    assert got.created_at == local and got.created_at.hour == 9
    assert abs(events[0].at - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        make(store, now=datetime(2024, 5, 1, 9, 30))
