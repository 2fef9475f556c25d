"""What each channel puts on the wire, checked at real receivers (issue 8, section 5): email headers at
an aiosmtpd server, Slack escaping and webhook signatures at an aiohttp server, and the drain deadline
with Slack pacing and a receiver that hangs. Events are written through the Journal, as the engine does."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_string
from email.policy import default as default_policy
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from shipyard.config.alerting import Notifications
from shipyard.engine.journal import Journal
from shipyard.notify.channels import webhook
from shipyard.notify.worker import Worker
from shipyard.store import Store
from shipyard.store import outbox as ob
from shipyard.store.deployments import create_deployment, update_deployment
from shipyard.store.sql import utcnow
from shipyard.testing.receivers import HttpReceiver, SmtpReceiver

# RFC 5322 3.6.4: msg-id = "<" id-left "@" id-right ">", both dot-atom-text here.
ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
MSG_ID = re.compile(rf"<{ATOM}@{ATOM}>")
HOSTILE = "deploy of <!channel> & <https://evil.example/x|click here> for <@U024BE7LH> <!here|here>"


@pytest.fixture
def store(sqlite_store: Store) -> Iterator[Store]:
    with sqlite_store.session() as s:
        create_deployment(s, deployment_id="deploy-1", service="api", env="prod", kind="deploy", revision="a" * 40,
                          ref="main", strategy="rolling", actor="<!subteam^SAZ94GDB8> & co", plan=[])
        update_deployment(s, "deploy-1", started_at=datetime.now(UTC) - timedelta(seconds=7))
    yield sqlite_store


def _notifications(channels: dict[str, Any], events: list[str] | None = None) -> Notifications:
    return Notifications.model_validate({
        "channels": channels, "dashboard_url": "https://ship.example.com",
        "revision_url": "https://git.example.com/{service}/commit/{revision}?view=split&w=1",
        "routes": [{"events": events or ["*"], "to": list(channels)}]})


def _journal(store: Store, n: Notifications) -> Journal:
    return Journal(store, "deploy-1", "api", "prod", notifications=n)


async def test_email_carries_date_and_a_proper_message_id_stable_across_retries(store: Store) -> None:
    with SmtpReceiver(fail_first=1) as smtp:
        n = _notifications({"mail": {"type": "email", "to": ["ops@example.com"], "from": "Ship <ship@example.com>",
                                     "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none"}}})
        j = _journal(store, n)
        before = datetime.now(UTC).replace(microsecond=0)
        j.event("deploy.failed", "boom", reason="hook exited 1")
        j.event("rollback.completed", "rolled back")
        assert await Worker(store, n, base_delay=0.05, max_delay=0.1).drain(10)
        after = datetime.now(UTC)
    assert len(smtp.messages) == 2 and len(smtp.attempts) == 3         # the first was refused once, retried
    parsed = [message_from_string(m["data"], policy=default_policy) for m in smtp.attempts]
    ids = [str(p["Message-ID"]) for p in parsed]
    assert all(MSG_ID.fullmatch(i) for i in ids), ids
    assert all(i.endswith("@example.com>") for i in ids)               # the sender's domain, not "shipyard"
    assert ids[0] == ids[1] != ids[2]                                   # a retry is the same message
    for p in parsed:
        assert len(p.get_all("Date")) == 1 and len(p.get_all("Message-ID")) == 1
        sent = parsedate_to_datetime(str(p["Date"]))
        assert sent.tzinfo is not None and before <= sent <= after
    assert parsed[0]["Date"] == parsed[1]["Date"]


def _mrkdwn_texts(body: dict[str, Any]) -> list[str]:
    texts = [body["text"]]
    for block in body["blocks"]:
        if block.get("text", {}).get("type") == "mrkdwn":
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return texts


async def test_slack_escapes_everything_that_is_not_its_own_link(store: Store) -> None:
    async with HttpReceiver() as rx:
        n = _notifications({"slack": {"type": "slack", "webhook": f"{rx.url}/slack"}})
        _journal(store, n).event("deploy.failed", HOSTILE, reason="hook said <!everyone> & <mailto:x@y|mail>")
        assert await Worker(store, n).drain(10)
    body = rx.requests[0].json()
    texts = _mrkdwn_texts(body)
    joined = "\n".join(texts)
    own = re.compile(r"<https://git\.example\.com/api/commit/a{40}\?view=split&amp;w=1\|a{12}>")
    assert len(own.findall(joined)) == 1                 # the revision link shipyard made is still a link
    rest = own.sub("", joined)
    assert "<" not in rest and ">" not in rest           # no mention, no link, no command from content
    assert not re.search(r"&(?!amp;|lt;|gt;)", rest)     # every & is an entity
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example/x|click here&gt;" in body["text"]
    assert "&lt;!everyone&gt; &amp; &lt;mailto:x@y|mail&gt;" in joined and "&lt;!subteam^SAZ94GDB8&gt;" in joined
    buttons = [e["url"] for b in body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["https://ship.example.com/deployments/deploy-1", "https://ship.example.com/deployments/deploy-1/logs"]


async def test_webhook_timestamped_signature_verifies_and_replays_are_refused(store: Store) -> None:
    async with HttpReceiver(signing_secret="s3cret", tolerance=300) as rx:
        n = _notifications({"hook": {"type": "webhook", "url": f"{rx.url}/hook", "secret": "s3cret"}})
        _journal(store, n).event("deploy.succeeded", "done", revision="a" * 40)
        assert await Worker(store, n).drain(10)
        assert len(rx.accepted) == 1 and not rx.refused
        got = rx.accepted[0]
        assert webhook.verify("s3cret", got.body, got.headers["X-Shipyard-Signature"])    # the old header too
        assert abs(int(got.headers["X-Shipyard-Timestamp"]) - time.time()) < 30
        assert sorted(got.json()) == webhook.body_fields()

        kept = ("x-shipyard", "idempotency", "content-type")
        sent = {k: v for k, v in got.headers.items() if k.lower().startswith(kept)}
        async with httpx.AsyncClient() as client:
            again = await client.post(f"{rx.url}/hook", content=got.body, headers=sent)
            assert again.status_code == 200 and again.text == "duplicate" and len(rx.accepted) == 1
            rx.clock = lambda: time.time() + 301                       # the same request, replayed later
            late = await client.post(f"{rx.url}/hook", content=got.body, headers=sent)
            assert late.status_code == 401 and late.text == "stale timestamp"
            forged = {**sent, "X-Shipyard-Timestamp": str(int(rx.clock()))}   # a fresh stamp, an old signature
            bad = await client.post(f"{rx.url}/hook", content=got.body, headers=forged)
            assert bad.status_code == 401 and bad.text == "bad signature"
            rx.clock = time.time
            tampered = await client.post(f"{rx.url}/hook", content=got.body.replace(b"done", b"dune"),
                                         headers={**sent, "X-Shipyard-Timestamp": str(int(time.time()))})
            assert tampered.status_code == 401
    assert [why for _, why in rx.refused] == ["stale timestamp", "bad signature", "bad signature"]


async def test_drain_ends_at_its_deadline_and_leaves_the_rest_due(store: Store) -> None:
    """13 paced Slack messages used to hold a drain of "5 s" for 12 s; a hanging receiver, for ever."""
    async with HttpReceiver() as slack, HttpReceiver(delay=30) as slow:
        n = _notifications({"slack": {"type": "slack", "webhook": f"{slack.url}/slack"},
                            "slow": {"type": "webhook", "url": f"{slow.url}/hook"}})
        j = _journal(store, n)
        for i in range(13):
            j.event("deploy.started", f"n{i}")
        started = time.monotonic()
        assert not await Worker(store, n).drain(2.5)
        took = time.monotonic() - started
        assert took <= 3.0, f"the drain took {took:.2f}s for a 2.5s deadline"
        assert 2 <= len(slack.requests) <= 4 and len(slow.requests) == 1       # paced; one send in flight
        with store.session() as s:
            pending = [r for r in ob.all_rows(s) if r.state == ob.PENDING]
        assert len(pending) == 26 - len(slack.requests)
        assert all(r.next_attempt_at <= utcnow() for r in pending)             # due now, not after a lease
        slow.delay = 0
        assert await Worker(store, n).drain(30)                                # `notify worker` finishes it
    assert sorted(r.json()["text"].split(": ")[-1] for r in slack.requests) == sorted(f"n{i}" for i in range(13))
    assert slack.duplicates() == 0 and len(slow.requests) == 14 and slow.duplicates() == 1   # the cut-off one
    with store.session() as s:
        assert {r.state for r in ob.all_rows(s)} == {ob.DELIVERED}


async def test_a_drain_past_its_deadline_never_waits_for_backoff(store: Store) -> None:
    async with HttpReceiver(mode="500") as rx:
        n = _notifications({"hook": {"type": "webhook", "url": f"{rx.url}/hook"}})
        _journal(store, n).event("deploy.failed", "x")
        worker = Worker(store, n, base_delay=20, max_delay=20)
        started = time.monotonic()
        assert not await worker.drain(1.0)
        assert time.monotonic() - started <= 1.5 and len(rx.requests) == 1
    with store.session() as s:
        (row,) = ob.all_rows(s)
    assert row.state == ob.PENDING and row.attempts == 1 and row.next_attempt_at > utcnow()  # its backoff stays
