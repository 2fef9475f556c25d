"""/metrics for Prometheus: what the state database says, computed at scrape time with a few GROUP BY
queries (nothing is counted in this process, so every daemon answers the same and a restart loses nothing).

- shipyard_deployments_total{service,env,kind,state}: deployments recorded (finished and not). A counter
  must never go down, and `shipyard prune` deletes old runs: the finished runs of the days before the
  history horizon are counted from their daily aggregates (as they were when folded), the rest from the
  raw rows, so a prune moves runs from one side to the other without changing a figure (a run still
  unfinished when its day was folded counts while it is unfinished; its end is not counted again);
- shipyard_deployment_duration_seconds_sum / _count{service,env,state}: of finished deployments;
- shipyard_deployments_in_progress{service,env}, shipyard_queue_length{service,env};
- shipyard_last_success_timestamp_seconds{service,env}: when its last successful deploy finished;
- shipyard_outbox_pending / shipyard_outbox_failed: notifications waiting, and given up on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from shipyard.domain.deployment import TERMINAL, DeployState
from shipyard.reports.aggregates import pruned
from shipyard.store import Store
from shipyard.store.models import DailyAggregate, Deployment, OutboxEntry, QueueEntry


def _seconds(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    """end - start in seconds, in the database (SQLite keeps times as text, PostgreSQL as timestamps)."""
    if dialect == "sqlite":
        return (func.julianday(end) - func.julianday(start)) * literal_column("86400.0")
    return func.extract("epoch", end - start)


def _epoch(dialect: str, when: Any) -> ColumnElement[Any]:
    if dialect == "sqlite":
        return (func.julianday(when) - literal_column("2440587.5")) * literal_column("86400.0")
    return func.extract("epoch", when)


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        dialect = self.store.engine.dialect.name
        d = Deployment
        total = CounterMetricFamily("shipyard_deployments", "Deployments recorded.",
                                    labels=["service", "env", "kind", "state"])
        seconds = _seconds(dialect, d.started_at, d.finished_at)
        dur_sum = GaugeMetricFamily("shipyard_deployment_duration_seconds_sum",
                                    "Seconds finished deployments took, summed.", labels=["service", "env", "state"])
        dur_count = GaugeMetricFamily("shipyard_deployment_duration_seconds_count",
                                      "Finished deployments with a duration.", labels=["service", "env", "state"])
        running = GaugeMetricFamily("shipyard_deployments_in_progress", "Deployments running now.",
                                    labels=["service", "env"])
        queued = GaugeMetricFamily("shipyard_queue_length", "Deployments waiting for their turn.",
                                   labels=["service", "env"])
        last_ok = GaugeMetricFamily("shipyard_last_success_timestamp_seconds",
                                    "When the last successful deploy of a service/env finished (Unix time).",
                                    labels=["service", "env"])
        outbox_pending = GaugeMetricFamily("shipyard_outbox_pending", "Notifications waiting to be delivered.")
        outbox_failed = GaugeMetricFamily("shipyard_outbox_failed", "Notifications given up on.")
        terminal = [s.value for s in TERMINAL]
        with self.store.session(readonly=True) as s:
            for labels, n in sorted(_deployment_counts(s, terminal).items()):
                total.add_metric(list(labels), n)
            for service, env, state, sumsec, n in s.execute(
                    select(d.service, d.env, d.state, func.sum(seconds), func.count())
                    .where(d.state.in_(terminal), d.started_at.is_not(None), d.finished_at.is_not(None))
                    .group_by(d.service, d.env, d.state)):
                dur_sum.add_metric([service, env, state], round(float(sumsec or 0.0), 3))   # julianday: ~ms
                dur_count.add_metric([service, env, state], n)
            for service, env, n in s.execute(
                    select(d.service, d.env, func.count()).where(d.state.in_(
                        [DeployState.IN_PROGRESS.value, DeployState.ROLLING_BACK.value])).group_by(d.service, d.env)):
                running.add_metric([service, env], n)
            for service, env, n in s.execute(
                    select(QueueEntry.service, QueueEntry.env, func.count()).group_by(QueueEntry.service,
                                                                                       QueueEntry.env)):
                queued.add_metric([service, env], n)
            for service, env, at in s.execute(
                    select(d.service, d.env, func.max(_epoch(dialect, d.finished_at)))
                    .where(d.state == DeployState.SUCCEEDED.value, d.kind == "deploy").group_by(d.service, d.env)):
                if at is not None:
                    last_ok.add_metric([service, env], round(float(at), 3))
            counts = dict(s.execute(select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state)).all())
        outbox_pending.add_metric([], counts.get("pending", 0))
        outbox_failed.add_metric([], counts.get("failed", 0))
        yield from (total, dur_sum, dur_count, running, queued, last_ok, outbox_pending, outbox_failed)


def _deployment_counts(s: Any, terminal: list[str]) -> dict[tuple[str, str, str, str], int]:
    """(service, env, kind, state) -> runs: the raw rows, but for the finished runs created before the
    horizon, which are read from the aggregates of their days (whether `prune` deleted them yet or kept
    them). Unfinished runs are always raw rows: an aggregate does not record their state."""
    d, a = Deployment, DailyAggregate
    by_state = (d.service, d.env, d.kind, d.state)
    raw = select(*by_state, func.count()).group_by(*by_state)
    cut = pruned(s)         # where raw rows end; days folded ahead but not pruned are still counted raw
    if cut is not None:
        raw = raw.where(or_(d.created_at >= cut, d.state.not_in(terminal)))
    counts = {(service, env, kind, state): int(n) for service, env, kind, state, n in s.execute(raw)}
    if cut is not None:
        folded = select(a.service, a.env, a.kind, func.sum(a.succeeded), func.sum(a.failed), func.sum(a.rolled_back),
                        func.sum(a.cancelled)).where(a.day < cut).group_by(a.service, a.env, a.kind)
        for service, env, kind, *per_state in s.execute(folded):
            for state, n in zip(_FOLDED_STATES, per_state, strict=True):
                if n:
                    key = (service, env, kind, state)
                    counts[key] = counts.get(key, 0) + int(n)
    return counts


_FOLDED_STATES = (DeployState.SUCCEEDED.value, DeployState.FAILED.value, DeployState.ROLLED_BACK.value,
                  DeployState.CANCELLED.value)


def registry_for(store: Store) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    return registry
