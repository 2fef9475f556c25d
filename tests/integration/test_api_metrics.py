"""The /metrics collector's SQL on both databases (durations and Unix times are computed in the database,
differently on SQLite and PostgreSQL), against figures worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from shipyard.api.metrics import registry_for
from shipyard.store import Store, create_deployment
from shipyard.store import outbox as ob
from shipyard.store.queue import enqueue

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
