"""Channel implementations: each renders a Message for one service and sends it once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shipyard.config.alerting import EmailChannel, SlackChannel, WebhookChannel
from shipyard.notify.channels.base import Channel, Delivery
from shipyard.notify.channels.email import EmailSender
from shipyard.notify.channels.slack import SlackSender
from shipyard.notify.channels.webhook import WebhookSender

Resolve = Callable[[str], str]


def build_channel(name: str, config: Any, resolve: Resolve | None = None) -> Channel:
    """The sender for one configured channel; `resolve` fills `${secret:NAME}` references at send time."""
    r: Resolve = resolve or (lambda text: text)
    if isinstance(config, SlackChannel):
        return SlackSender(name, r(config.webhook), channel=config.channel)
    if isinstance(config, EmailChannel):
        return EmailSender(name, config, r)
    if isinstance(config, WebhookChannel):
        return WebhookSender(name, r(config.url), headers={k: r(v) for k, v in config.headers.items()},
                             secret=r(config.secret) if config.secret else None)
    raise TypeError(f"unknown channel config {type(config).__name__}")


__all__ = ["Channel", "Delivery", "build_channel"]
