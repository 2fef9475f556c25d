"""End to end: a bad canary behind the real router, the alarm fires on the new revision's 5xx ratio, the
engine rolls back, and the Slack-format and email messages arrive at real local receivers."""

from __future__ import annotations

from email import message_from_string
from email.policy import default as default_policy
from pathlib import Path

from shipyard.config.alerting import Notifications
from shipyard.demo.alarm_scenario import run_bad_canary
from shipyard.testing.receivers import SmtpReceiver, ThreadedHttpReceiver


def test_bad_canary_alarm_rollback_and_notifications(tmp_path: Path) -> None:
    with ThreadedHttpReceiver() as slack, SmtpReceiver() as smtp:
        notifications = Notifications.model_validate({
            "channels": {
                "alerts": {"type": "slack", "webhook": f"{slack.url}/services/T/B/alerts"},
                "ops": {"type": "email", "to": ["ops@example.com"], "from": "shipyard@example.com",
                        "smtp": {"host": "127.0.0.1", "port": smtp.port, "tls": "none"}}},
            "routes": [{"events": ["alarm.alarm", "rollback.*", "deploy.failed"], "to": ["alerts", "ops"]}],
            "dashboard_url": "https://ship.example.com"})
        result = run_bad_canary(tmp_path, error_rate=0.3, rps=60, notifications=notifications, after=1.0)
        assert result["state"] == "rolled_back", result
        assert "alarm high_5xx in ALARM" in result["reason"]
        assert result["detection_seconds"] is not None and result["detection_seconds"] < 10
        assert result["rollback_seconds"] is not None and result["rollback_seconds"] < 5
        assert result["requests_failed_after_rollback"] == 0
        assert result["notifications"]["failed"] == 0
        bodies = [r.json() for r in slack.requests]
        mails = [message_from_string(m["data"], policy=default_policy) for m in smtp.messages]
    kinds = [b["blocks"][0]["text"]["text"].split(" · ")[0] for b in bodies]
    assert kinds[:1] == ["alarm.alarm"] and "rollback.started" in kinds and "rollback.completed" in kinds
    alarm_msg = bodies[0]
    assert "high_5xx" in alarm_msg["text"] and alarm_msg["blocks"][0]["type"] == "header"
    fields = " ".join(f["text"] for b in alarm_msg["blocks"] for f in b.get("fields", []))
    assert "*Environment*\nstg" in fields and "*Alarm*\nhigh_5xx" in fields
    buttons = next(b for b in alarm_msg["blocks"] if b["type"] == "actions")["elements"]
    assert buttons[0]["url"].startswith("https://ship.example.com/deployments/deploy-")
    assert len({r.headers["Idempotency-Key"] for r in slack.requests}) == len(slack.requests)
    subjects = [str(m["Subject"]) for m in mails]
    assert "[shipyard] [critical] alarm.alarm · api/stg" in subjects
    assert any("rollback.completed" in s for s in subjects)
    assert all(m.is_multipart() for m in mails)
