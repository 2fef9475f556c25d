"""The window a report covers: `--period 30d` (ending now) or explicit since/until, and the one before it.

Times are aware UTC datetimes, half-open: a deployment belongs to the period when since <= created_at < until
(created_at: when it was asked for; every run has one, and it is indexed). The previous period has the same
length and ends where this one starts, so "fewer failures than before" compares like with like.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from shipyard.errors import UsageError

UNITS: Final = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_SPEC = re.compile(r"([1-9]\d{0,4})([hdw])")
MAX_LENGTH: Final = timedelta(days=3660)      # ten years: longer is a typo, and overflows nothing


@dataclass(frozen=True)
class Period:
    """[since, until) in UTC; `label` is how it was asked for ("30d"), or "since..until"."""

    since: datetime
    until: datetime
    label: str = ""
    gap: tuple[datetime, datetime] | None = None   # [lo, hi) left out: days read from daily aggregates

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise UsageError(f"period {name} {value.isoformat()} has no time zone; give UTC (e.g. ...Z)")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.until <= self.since:
            raise UsageError(f"period must end after it starts ({self.since.isoformat()} .. {self.until.isoformat()})")
        if self.length > MAX_LENGTH:        # also from since/until: the previous period must stay a date
            raise UsageError(f"period {self.since.isoformat()} .. {self.until.isoformat()} is longer than "
                             f"{MAX_LENGTH.days} days")

    @property
    def length(self) -> timedelta:
        return self.until - self.since

    @property
    def days(self) -> float:
        return self.length / timedelta(days=1)

    def previous(self) -> Period:
        """The period of the same length that ends where this one starts."""
        label = f"previous {self.label}" if self.label else ""
        return Period(self.since - self.length, self.since, label)

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(), "days": round(self.days, 4),
                "label": self.label or f"{self.since.isoformat()}..{self.until.isoformat()}"}


def parse_period(spec: str, *, now: datetime | None = None) -> Period:
    """`12h`, `7d`, `30d`, `90d`, `2w`: that long, ending `now` (default: the current time)."""
    text = spec.strip().lower()
    match = _SPEC.fullmatch(text)
    if match is None:
        raise UsageError(f"period must be a whole number and a unit h, d or w (12h, 7d, 30d, 90d), not {spec!r}")
    length = int(match.group(1)) * UNITS[match.group(2)]
    if length > MAX_LENGTH:
        raise UsageError(f"period {spec!r} is longer than {MAX_LENGTH.days} days")
    until = (now or datetime.now(UTC)).astimezone(UTC)
    return Period(until - length, until, text)


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 time for --since/--until; a date alone is midnight UTC, a time without a zone is UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what} must be an ISO 8601 time (2026-11-01 or 2026-11-01T12:00:00Z), not {text!r}") \
            from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def period_between(since: datetime, until: datetime, label: str = "") -> Period:
    return Period(since, until, label)
