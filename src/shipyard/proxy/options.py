"""The tunables of one built-in router, as they cross process boundaries (config -> agent -> router).

Kept as plain data with strict parsing so a bad value from any caller is a ValueError naming the key,
and so what is persisted with a router is exactly what it runs with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class RouterOptions:
    """Timeouts (seconds) and retry budget of one router; see RouterServer for what each one bounds."""

    response_timeout: float = 60.0
    connect_timeout: float = 5.0
    keepalive_timeout: float = 75.0
    pool_idle_timeout: float = 30.0
    max_attempts: int = 3

    @classmethod
    def from_mapping(cls, raw: Any) -> RouterOptions:
        """Parse JSON-ish input; unknown keys and bad values raise ValueError naming the key."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("router options must be an object")
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in raw.items():
            f = known.get(key)
            if f is None:
                raise ValueError(f"unknown router option {key!r} (known: {', '.join(sorted(known))})")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"router option {key}: a number is required")
            if f.type in ("int", int):
                if not float(value).is_integer() or value < 1:
                    raise ValueError(f"router option {key}: an integer >= 1 is required")
                values[key] = int(value)
            else:
                if not math.isfinite(value) or value <= 0:
                    raise ValueError(f"router option {key}: a number of seconds > 0 is required")
                values[key] = float(value)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
