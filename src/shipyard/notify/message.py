"""The message a channel renders: one domain event, flattened, with its severity and idempotency key.

It is stored as the outbox row's payload, so what gets sent is fixed at the moment the event happened
(already redacted by the Journal), not re-read later from rows that may have changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fnmatch import fnmatchcase
from typing import Any

# Kinds a human must look at now; everything else that is not routine is a warning.
CRITICAL = ("deploy.failed", "rollback.*", "alarm.alarm", "recover.*")
WARNING = ("alarm.*", "health.probe_failed", "drain.incomplete", "notify.failed", "analysis.*")


def severity_of(kind: str) -> str:
    """info, warning or critical: what routes filter on and what colours a Slack message."""
    if kind == "alarm.ok":
        return "info"
    if any(fnmatchcase(kind, p) for p in CRITICAL):
        return "critical"
    if any(fnmatchcase(kind, p) for p in WARNING):
        return "warning"
    return "info"


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
