"""The /metrics collector's SQL on both databases (durations and Unix times are computed in the database,
differently on SQLite and PostgreSQL), against figures worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from reports_history import T0 as H0
from reports_history import write_history
from shipyard.api.metrics import registry_for
from shipyard.store import Deployment, Store, create_deployment
from shipyard.store import outbox as ob
from shipyard.store.queue import enqueue
from shipyard.store.retention import prune

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_figures_on_both_databases(store: Store) -> None:
    with store.session() as s:
        for n, (state, took) in enumerate((("succeeded", 30), ("succeeded", 90), ("failed", 12), ("rolled_back", 5))):
            row = create_deployment(s, service="api", env="prod", revision=f"{n:040x}", strategy="rolling",
                                    actor="ci", state=state, now=T0 + timedelta(minutes=n), deployment_id=f"m{n}")
            row.started_at = row.finished_at - timedelta(seconds=took)    # type: ignore[operator]
        create_deployment(s, service="api", env="prod", revision="e" * 40, strategy="rolling", actor="ci",
                          state="in_progress", deployment_id="m-running")
        enqueue(s, service="api", env="prod", deployment_id="m-queued", owner="x")
        ob.enqueue(s, event_id=None, channel="ops", idempotency_key="k1", payload={})
    text = generate_latest(registry_for(store)).decode()
    samples = {(x.name, tuple(sorted(x.labels.items()))): x.value
               for family in text_string_to_metric_families(text) for x in family.samples}

    def at(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted({"service": "api", "env": "prod", **labels}.items())))]

    assert at("shipyard_deployments_total", kind="deploy", state="succeeded") == 2
    assert at("shipyard_deployments_total", kind="deploy", state="in_progress") == 1
    assert at("shipyard_deployment_duration_seconds_sum", state="succeeded") == 120.0
    assert at("shipyard_deployment_duration_seconds_count", state="succeeded") == 2
    assert at("shipyard_deployment_duration_seconds_sum", state="failed") == 12.0
    assert at("shipyard_deployments_in_progress") == 1
    assert at("shipyard_queue_length") == 1
    assert abs(at("shipyard_last_success_timestamp_seconds") - (T0 + timedelta(minutes=1)).timestamp()) < 0.001
    assert samples[("shipyard_outbox_pending", ())] == 1 and samples[("shipyard_outbox_failed", ())] == 0


def _counts(store: Store) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(registry_for(store)).decode()
    return {tuple(sorted(x.labels.items())): x.value for family in text_string_to_metric_families(text)
            for x in family.samples if x.name == "shipyard_deployments_total"}


def test_deployments_total_stays_put_across_a_prune(store: Store) -> None:
    """`shipyard prune` deletes old runs, yet no series of the counter moves: at every transaction of the
    prune (each fold, the horizon, each delete batch) and after it, the figures are those of before; a
    later prune that moves the horizon on, and a new run, too (the new one counts)."""
    write_history(store)
    before = _counts(store)
    assert sum(before.values()) == 12
    seen: list[str] = []

    def unchanged(what: str) -> None:
        seen.append(what)
        assert _counts(store) == before, what

    result = prune(store, 90 * 86400.0, now=H0 + timedelta(days=94), batch=2, checkpoint=unchanged)
    assert result.deleted["deployments"] == 5 and seen.count("deployments") >= 3, (result.deleted, seen)
    assert _counts(store) == before
    prune(store, 90 * 86400.0, now=H0 + timedelta(days=98), batch=2, checkpoint=unchanged)     # w2 and d7 go
    with store.session() as s:
        assert s.get(Deployment, "d7") is None
        create_deployment(s, service="api", env="prod", revision="f" * 40, strategy="rolling", actor="ci",
                          state="succeeded", deployment_id="later")
    after = _counts(store)
    key = tuple(sorted({"service": "api", "env": "prod", "kind": "deploy", "state": "succeeded"}.items()))
    assert after[key] == before[key] + 1 and {k: v for k, v in after.items() if k != key} == \
        {k: v for k, v in before.items() if k != key}
