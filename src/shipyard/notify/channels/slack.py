"""Slack incoming webhooks with Block Kit messages (and a plain `text` fallback for notifications).

Slack refuses a whole message that breaks its limits (50 blocks, 3000 characters per section text,
150 per header, 10 fields per section, 2000 per field), so every piece is clipped here rather than
discovered as a 400 that the worker must not retry.
"""

from __future__ import annotations

import json
from typing import Any

from shipyard.notify.channels.base import IDEMPOTENCY_HEADER, Delivery, clip, details, post_json
from shipyard.notify.message import Message

MAX_BLOCKS = 50
SECTION_TEXT = 3000
HEADER_TEXT = 150
FIELD_TEXT = 2000
MAX_FIELDS = 10
EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def _links(message: Message) -> tuple[str | None, str | None]:
    if not message.dashboard_url or not message.deployment_id:
        return None, None
    base = message.dashboard_url.rstrip("/")
    return f"{base}/deployments/{message.deployment_id}", f"{base}/deployments/{message.deployment_id}/logs"


def render(message: Message, channel: str | None = None) -> dict[str, Any]:
    """The webhook body: blocks within Slack's limits, plus `text` for notifications and old clients."""
    emoji = EMOJI.get(message.severity, "")
    deploy_url, logs_url = _links(message)
    fields = []
    for label, value in details(message)[:MAX_FIELDS]:
        text = str(value)
        if label == "Revision" and message.data.get("revision_url"):
            text = f"<{message.data['revision_url']}|{text[:12]}>"
        fields.append({"type": "mrkdwn", "text": clip(f"*{label}*\n{text}", FIELD_TEXT)})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(f"{message.title}", HEADER_TEXT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip(f"{emoji} {message.text or message.kind}",
                                                                    SECTION_TEXT)}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if deploy_url and logs_url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Deployment"}, "url": deploy_url},
            {"type": "button", "text": {"type": "plain_text", "text": "Logs"}, "url": logs_url}]})
    context = f"{message.severity} · {message.at or ''} · key {message.idempotency_key[:12]}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(context, SECTION_TEXT)}]})
    body: dict[str, Any] = {
        "text": clip(f"{emoji} {message.title}: {message.text}".strip(), SECTION_TEXT),
        "blocks": blocks[:MAX_BLOCKS],
    }
    if channel:
        body["channel"] = channel
    return body


class SlackSender:
    pace = 1.0  # Slack allows about one message per second per incoming webhook

    def __init__(self, name: str, webhook: str, *, channel: str | None = None) -> None:
        self.name, self.webhook, self.channel = name, webhook, channel

    @property
    def destination(self) -> str:
        return self.webhook

    async def send(self, message: Message) -> Delivery:
        body = json.dumps(render(message, self.channel)).encode()
        return await post_json(self.name, self.webhook, body, {IDEMPOTENCY_HEADER: message.idempotency_key})
