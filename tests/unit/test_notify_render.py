"""Routing, severities and the pure renderers (Slack's limits, HMAC signatures, email parts, backoff)."""

from __future__ import annotations

import random
import re

from shipyard.config.alerting import EmailChannel, Notifications
from shipyard.notify.channels import email, slack, webhook
from shipyard.notify.message import Message, severity_of
from shipyard.notify.routing import channels_for
from shipyard.notify.worker import backoff


def _notifications() -> Notifications:
    return Notifications.model_validate({
        "channels": {"alerts": {"type": "slack", "webhook": "http://x/a"},
                     "deploys": {"type": "slack", "webhook": "http://x/d"},
                     "ops": {"type": "email", "to": ["ops@example.com"], "smtp": {"host": "localhost"}}},
        "routes": [{"events": ["deploy.failed", "rollback.*", "alarm.alarm"], "to": ["alerts", "ops"]},
                   {"events": ["deploy.*"], "to": ["deploys"], "environments": ["prod"]},
                   {"events": ["*"], "to": ["ops"], "severity": ["critical"], "services": ["api"]}],
    })


def _msg(kind: str, env: str = "prod", service: str = "api", **data: object) -> Message:
    return Message(kind=kind, service=service, env=env, text=f"{kind} happened", severity=severity_of(kind),
                   deployment_id="deploy-20241212-143052-a1b2c3d4", data=dict(data), idempotency_key="k" * 32,
                   dashboard_url="https://ship.example.com")


def test_routes_match_patterns_env_service_and_severity() -> None:
    n = _notifications()
    assert channels_for(n, _msg("deploy.failed")) == ["alerts", "ops", "deploys"]
    assert channels_for(n, _msg("deploy.started", env="stg")) == []
    assert channels_for(n, _msg("deploy.started")) == ["deploys"]
    assert channels_for(n, _msg("rollback.started", env="dev", service="web")) == ["alerts", "ops"]
    assert channels_for(n, _msg("recover.started", env="dev")) == ["ops"]
    assert channels_for(None, _msg("deploy.failed")) == []


def test_severity_of_kinds() -> None:
    assert severity_of("deploy.failed") == "critical" and severity_of("rollback.completed") == "critical"
    assert severity_of("alarm.alarm") == "critical" and severity_of("alarm.ok") == "info"
    assert severity_of("alarm.insufficient_data") == "warning" and severity_of("deploy.started") == "info"


def test_slack_blocks_fit_the_limits_and_carry_buttons_and_fallback() -> None:
    m = _msg("deploy.failed", revision="a1b2c3d4" * 5, actor="lead", duration=12.34, reason="x" * 10_000,
             revision_url="https://git.example.com/c/a1b2")
    m.kind = "deploy.failed." + "k" * 400
    body = slack.render(m, channel="#alerts")
    blocks = body["blocks"]
    assert len(blocks) <= slack.MAX_BLOCKS and body["channel"] == "#alerts"
    assert body["text"] and len(body["text"]) <= slack.SECTION_TEXT
    header = blocks[0]["text"]["text"]
    assert blocks[0]["type"] == "header" and len(header) <= slack.HEADER_TEXT
    for b in blocks:
        if b["type"] == "section":
            assert len(b.get("text", {}).get("text", "")) <= slack.SECTION_TEXT
            assert all(len(f["text"]) <= slack.FIELD_TEXT for f in b.get("fields", []))
            assert len(b.get("fields", [])) <= slack.MAX_FIELDS
    fields = " ".join(f["text"] for b in blocks for f in b.get("fields", []))
    assert "*Environment*\nprod" in fields and "*Actor*\nlead" in fields and "12.3s" in fields
    assert "<https://git.example.com/c/a1b2|a1b2c3d4a1b2>" in fields
    actions = next(b for b in blocks if b["type"] == "actions")
    urls = [e["url"] for e in actions["elements"]]
    assert urls == ["https://ship.example.com/deployments/deploy-20241212-143052-a1b2c3d4",
                    "https://ship.example.com/deployments/deploy-20241212-143052-a1b2c3d4/logs"]


def test_webhook_signature_roundtrip() -> None:
    sig = webhook.sign("k3y", b'{"a":1}')
    assert sig.startswith("sha256=") and webhook.verify("k3y", b'{"a":1}', sig)
    assert not webhook.verify("other", b'{"a":1}', sig)


def test_email_has_text_and_html_and_message_id() -> None:
    cfg = EmailChannel.model_validate({"type": "email", "to": ["a@x", "b@x"], "from": "s@x",
                                       "smtp": {"host": "h"}})
    mail = email.render(_msg("rollback.completed", reason="<alarm high_5xx>"), cfg)
    assert mail["To"] == "a@x, b@x" and re.fullmatch(rf"<{'k' * 32}\.[0-9a-f]{{16}}@x>", mail["Message-ID"])
    assert mail["Date"]
    kinds = [part.get_content_type() for part in mail.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert "&lt;alarm high_5xx&gt;" in mail.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(1)
    first = [backoff(0, base=1, cap=60, rng=rng) for _ in range(50)]
    assert all(0.5 <= d <= 1 for d in first) and len(set(first)) > 40
    assert all(30 <= backoff(10, base=1, cap=60, rng=rng) <= 60 for _ in range(20))


def test_webhook_body_fields_are_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
    section = doc[doc.index("### Body"):doc.index("### Verifying")]
    assert sorted(set(re.findall(r"^\| `([a-z_]+)` \|", section, re.M))) == webhook.body_fields()


def test_slack_links_cannot_be_broken_out_of() -> None:
    assert slack.link("https://x/c?a=1&b=<2>|3 4", "<!here>") == "<https://x/c?a=1&amp;b=%3C2%3E%7C3%204|&lt;!here&gt;>"
    assert slack.escape("a & <b>") == "a &amp; &lt;b&gt;"
    assert slack.clip_escaped("x" * 10 + "&amp;", 13) == "x" * 10 + "…"
