"""The message a channel renders: one domain event, flattened, with its severity and idempotency key.

It is stored as the outbox row's payload, so what gets sent is fixed at the moment the event happened
(already redacted by the Journal), not re-read later from rows that may have changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from shipyard.domain.events import kind as event_kind


def severity_of(kind: str) -> str:
    """info, warning or critical (domain/events.py): what routes filter on and what colours a Slack
    message. A kind nobody registered (a plugin's) is info."""
    known = event_kind(kind)
    return known.severity if known is not None else "info"


@dataclass
class Message:
    kind: str
    service: str
    env: str
    text: str
    severity: str = "info"
    deployment_id: str | None = None
    event_id: int | None = None
    at: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""
    dashboard_url: str | None = None
    # [label, url] pairs: the signed approve/reject links of an approval.requested message, minted at
    # delivery (notify/approval_links.py), never stored in the outbox
    links: list[Any] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.kind} · {self.service}/{self.env}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def field_value(self, name: str) -> Any:
        """A detail of the event (revision, actor, reason, duration...) whichever key the engine used."""
        return self.data.get(name)
