"""Durations as people write them in shipyard.yaml ("500ms", "1m30s", 90) turned into float seconds.

Every timeout and period in the config goes through here so one spelling works everywhere and a typo
("5 mins", "-1s") is an error at load time rather than a surprise mid-deploy.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")

DURATION_HELP = 'a duration like "500ms", "2s", "5m", "1h", "1m30s" or a number of seconds'


def parse_duration(value: object) -> float:
    """Return seconds for a duration string or number; raise ValueError with a message fit for users."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HELP}, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"duration must not be negative, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected {DURATION_HELP}, got {type(value).__name__}")
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    pos, total, seen = 0, 0.0, False
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * UNITS[match.group(2)]
        pos, seen = match.end(), True
    if not seen or pos != len(text):
        raise ValueError(f"invalid duration {value!r}: expected {DURATION_HELP}")
    return total


def format_duration(seconds: float) -> str:
    """Render seconds back in the config spelling (used by `shipyard init` and error messages)."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000):d}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    parts = []
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


Duration = Annotated[float, BeforeValidator(parse_duration, json_schema_input_type=str | float)]
"""A float of seconds in Python; a string like "2s" or a number in YAML and in the JSON Schema."""
