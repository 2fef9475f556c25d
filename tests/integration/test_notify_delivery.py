"""Durable delivery against real local receivers: an aiohttp server that records, fails, throttles or is
down, and an aiosmtpd server. Events are written through the Journal, as the engine writes them."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shipyard.config.alerting import Notifications
from shipyard.engine.journal import Journal
from shipyard.notify.channels import webhook
from shipyard.notify.worker import Worker
from shipyard.store import Store
from shipyard.store import outbox as ob
from shipyard.store.deployments import create_deployment, update_deployment
from shipyard.testing.receivers import HttpReceiver, SmtpReceiver


def _config(url: str, *, smtp_port: int | None = None, kind: str = "webhook", give_up: float = 60) -> Notifications:
    channels: dict[str, Any] = {"hook": {"type": "webhook", "url": f"{url}/hook", "secret": "s3cret"},
                                "slack": {"type": "slack", "webhook": f"{url}/slack"}}
    if smtp_port:
        channels["mail"] = {"type": "email", "to": ["ops@example.com"], "from": "ship@example.com",
                            "smtp": {"host": "127.0.0.1", "port": smtp_port, "tls": "none"}}
    to = {"webhook": ["hook"], "slack": ["slack"], "all": list(channels)}[kind]
    return Notifications.model_validate({"channels": channels, "give_up_after": give_up,
                                         "revision_url": "https://git.example.com/{service}/commit/{revision}",
                                         "routes": [{"events": ["deploy.*", "rollback.*"], "to": to}]})


@pytest.fixture
def journal_store(store: Store) -> Iterator[Store]:
    """A store (SQLite and PostgreSQL in turn) holding one started deployment."""
    with store.session() as s:
        create_deployment(s, deployment_id="deploy-1", service="api", env="prod", kind="deploy", revision="a" * 40,
                          ref="main", strategy="rolling", actor="lead", plan=[])
        update_deployment(s, "deploy-1", started_at=datetime.now(UTC) - timedelta(seconds=42))
    yield store


def _journal(store: Store, n: Notifications | None) -> Journal:
    return Journal(store, "deploy-1", "api", "prod", notifications=n)


def test_outbox_rows_commit_with_their_event_and_only_for_routed_events(journal_store: Store) -> None:
    n = _config("http://127.0.0.1:9", kind="all")
    j = _journal(journal_store, n)
    j.event("deploy.started", "go", actor="lead")
    j.event("traffic.changed", "not routed")
    _journal(journal_store, None).event("deploy.failed", "no config, no rows")
    with journal_store.session() as s:
        rows = ob.all_rows(s)
    assert sorted(r.channel for r in rows) == ["hook", "slack"]
    assert len({r.idempotency_key for r in rows}) == 2 and all(r.state == "pending" for r in rows)
    data = rows[0].payload["data"]
    assert data["actor"] == "lead" and data["revision"] == "a" * 40 and data["strategy"] == "rolling"
    assert 41 <= data["duration"] <= 60 and rows[0].payload["kind"] == "deploy.started"
    assert data["revision_url"] == f"https://git.example.com/api/commit/{'a' * 40}"


async def test_two_workers_never_send_one_row_twice(journal_store: Store) -> None:
    async with HttpReceiver() as rx:
        n = _config(rx.url)
        j = _journal(journal_store, n)
        for i in range(20):
            j.event("deploy.started", f"n{i}")
        a, b = Worker(journal_store, n), Worker(journal_store, n)
        assert all(await asyncio.gather(a.drain(10), b.drain(10)))
    assert len(rx.requests) == 20 and rx.duplicates() == 0 and a.sent + b.sent == 20


async def test_webhook_is_signed_and_retried_through_500_and_outage(journal_store: Store) -> None:
    async with HttpReceiver(mode="500") as rx:
        j = _journal(journal_store, _config(rx.url))
        j.event("deploy.succeeded", "done", revision="abc")
        worker = Worker(journal_store, j.notifications, base_delay=0.05, max_delay=0.2)  # type: ignore[arg-type]
        await worker.run_once()
        assert len(rx.requests) == 1
        await rx.stop()
        await asyncio.sleep(0.3)
        await worker.run_once()             # connection refused: retried later, not lost
        rx.mode = "ok"
        await rx.start()
        assert await worker.drain(5)
    last = rx.requests[-1]
    assert webhook.verify("s3cret", last.body, last.headers["X-Shipyard-Signature"])
    assert last.json()["kind"] == "deploy.succeeded" and last.headers["Idempotency-Key"]
    with journal_store.session() as s:
        (row,) = ob.all_rows(s)
    assert row.state == "delivered" and row.attempts >= 2 and row.last_error


async def test_429_honours_retry_after_and_other_4xx_is_not_retried(journal_store: Store) -> None:
    async with HttpReceiver(mode="429", retry_after=0.5) as rx:
        j = _journal(journal_store, _config(rx.url))
        j.event("deploy.started", "one")
        worker = Worker(journal_store, j.notifications, base_delay=0.01, max_delay=0.02)  # type: ignore[arg-type]
        await worker.run_once()
        rx.mode = "ok"
        t0 = time.monotonic()
        assert await worker.drain(5)
        assert time.monotonic() - t0 >= 0.4           # waited for Retry-After, not the 10 ms backoff
        rx.mode = "400"
        j.event("deploy.failed", "two")
        assert await worker.drain(2)
    with journal_store.session() as s:
        rows = ob.all_rows(s)
    assert [r.state for r in rows] == ["delivered", "failed"]
    assert rows[1].attempts == 1 and "HTTP 400" in (rows[1].last_error or "")


async def test_gives_up_after_the_deadline_with_the_error_recorded(journal_store: Store) -> None:
    j = _journal(journal_store, _config("http://127.0.0.1:9", give_up=0.5))
    j.event("deploy.failed", "nobody listens")
    worker = Worker(journal_store, j.notifications, base_delay=0.1, max_delay=0.2)  # type: ignore[arg-type]
    assert await worker.drain(5)
    with journal_store.session() as s:
        (row,) = ob.all_rows(s)
    assert row.state == "failed" and "gave up after" in (row.last_error or "")


async def test_slack_is_paced_to_one_message_per_second(journal_store: Store) -> None:
    async with HttpReceiver() as rx:
        j = _journal(journal_store, _config(rx.url, kind="slack"))
        for i in range(3):
            j.event("deploy.started", f"n{i}")
        assert await Worker(journal_store, j.notifications).drain(10)  # type: ignore[arg-type]
    times = [r.at for r in rx.requests]
    assert len(times) == 3 and all(b - a >= 0.95 for a, b in itertools.pairwise(times))
    assert [r.json()["text"].split(": ")[-1] for r in rx.requests] == ["n0", "n1", "n2"]
    assert all("blocks" in r.json() for r in rx.requests)


async def test_email_arrives_at_a_real_smtp_server(journal_store: Store) -> None:
    with SmtpReceiver() as smtp:
        n = Notifications.model_validate({
            "channels": {"mail": {"type": "email", "to": ["ops@example.com"], "from": "ship@example.com",
                                  "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none"}}},
            "routes": [{"events": ["rollback.*"], "to": ["mail"]}]})
        _journal(journal_store, n).event("rollback.completed", "rolled back", reason="alarm high_5xx")
        assert await Worker(journal_store, n).drain(5)
    (mail,) = smtp.messages
    assert mail["to"] == ["ops@example.com"] and "alarm high_5xx" in mail["data"]
    assert "text/html" in mail["data"] and "Subject: [shipyard] [critical] rollback.completed" in mail["data"]


def test_events_outside_a_deployment_are_routed_too(journal_store: Store) -> None:
    from shipyard.notify.outbox import record_event

    n = Notifications.model_validate({"channels": {"d": {"type": "webhook", "url": "http://127.0.0.1:9/x"}},
                                      "routes": [{"events": ["promotion.*", "approval.requested"], "to": ["d"]}]})
    with journal_store.session() as s:
        record_event(s, n, "promotion.completed", service="*", env="prod", message="stg -> prod", data={"repos": 3})
        record_event(s, n, "repo.fetched", service="*", env="prod")
    with journal_store.session() as s:
        rows = ob.all_rows(s)
    assert [r.payload["kind"] for r in rows] == ["promotion.completed"] and rows[0].payload["data"] == {"repos": 3}
