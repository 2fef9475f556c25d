"""Slack incoming webhooks with Block Kit messages (and a plain `text` fallback for notifications).

Slack refuses a whole message that breaks its limits (50 blocks, 3000 characters per section text,
150 per header, 10 fields per section, 2000 per field), so every piece is clipped here rather than
discovered as a 400 that the worker must not retry.

Everything that comes from outside shipyard's own code (event text, hook output, reasons, names,
revisions, actors) is escaped as Slack asks (`&` `<` `>` to `&amp;` `&lt;` `&gt;`) in the `text` field
and in every mrkdwn block, so no content can ping `<!channel>`/`<!here>`/`<@U…>` or plant a
`<https://…|link>`; the only links are the ones built here (revision, deployment, logs, signed
approval links), from URLs that are escaped too and can never close the link early. Plain-text objects
(the header, button labels) are not parsed by Slack, so they stay as they are.
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


def escape(text: object) -> str:
    """Slack's three control characters as entities (the only escaping Slack wants)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip_escaped(text: str, limit: int) -> str:
    """Like `clip`, but never cuts an entity in half (a cut `&am` would show, if harmlessly)."""
    out = clip(text, limit)
    if out != text:
        amp = out.rfind("&", max(0, len(out) - 6))
        if amp >= 0 and ";" not in out[amp:]:
            out = out[:amp] + "…"
    return out


def link(url: str, label: str) -> str:
    """`<url|label>`: a link shipyard makes. `|`, `<`, `>` and spaces in the URL are percent-encoded,
    `&` escaped, so nothing in a template or a revision can end the link or start another."""
    safe = url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")
    return f"<{safe.replace('&', '&amp;')}|{escape(label)}>"


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
        if label == "Revision" and message.data.get("revision_url"):
            text = link(str(message.data["revision_url"]), str(value)[:12])
        else:
            text = escape(value)
        fields.append({"type": "mrkdwn", "text": clip_escaped(f"*{label}*\n{text}", FIELD_TEXT)})
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(f"{message.title}", HEADER_TEXT)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": clip_escaped(
            f"{emoji} {escape(message.text or message.kind)}", SECTION_TEXT)}},
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    if deploy_url and logs_url:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Deployment"}, "url": deploy_url},
            {"type": "button", "text": {"type": "plain_text", "text": "Logs"}, "url": logs_url}]})
    if message.links:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": clip(str(label), 75)}, "url": str(url)}
            for label, url in message.links[:25]]})
    context = escape(f"{message.severity} · {message.at or ''} · key {message.idempotency_key[:12]}")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip_escaped(context, SECTION_TEXT)}]})
    body: dict[str, Any] = {
        "text": clip_escaped(f"{emoji} {escape(message.title)}: {escape(message.text)}".strip(), SECTION_TEXT),
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
