"""Which channels hear about an event: every route whose patterns all match sends to its channels.

Patterns are shell globs (`rollback.*`, `prod*`) so routes stay readable in YAML; a channel named by two
routes still gets the message once.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from shipyard.config.alerting import Notifications, NotifyRoute
from shipyard.notify.message import Message


def _any(patterns: list[str] | None, value: str) -> bool:
    return patterns is None or any(fnmatchcase(value, p) for p in patterns)


def matches(route: NotifyRoute, message: Message) -> bool:
    return (_any(route.events, message.kind) and _any(route.environments, message.env)
            and _any(route.services, message.service)
            and (route.severity is None or message.severity in route.severity))


def channels_for(notifications: Notifications | None, message: Message) -> list[str]:
    """Channel names, in route order, without duplicates; [] when nothing is configured."""
    if notifications is None:
        return []
    out: list[str] = []
    for route in notifications.routes:
        if matches(route, message):
            out.extend(name for name in route.to if name not in out and name in notifications.channels)
    return out
