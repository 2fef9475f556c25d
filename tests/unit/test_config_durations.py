"""Durations: every spelling the docs promise, and the ones that must be rejected."""

from __future__ import annotations

import pytest

from shipyard.config import format_duration, parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1m30s", 90.0), ("1h2m3s", 3723.0),
    ("1.5s", 1.5), ("2d", 172800.0), ("0", 0.0), ("0s", 0.0), ("90", 90.0), (" 10s ", 10.0),
    (3, 3.0), (2.5, 2.5), (0, 0.0), ("1s500ms", 1.5),
])
def test_parses(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5 mins", "-1s", "-1", "1x", "s", "1m30", "m1", "1.s", True, None, [1], -3])
def test_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.5, "500ms"), (2, "2s"), (300, "5m"), (90, "1m30s"), (3600, "1h"), (0, "0s"), (1.5, "1.5s"),
])
def test_formats_round_trip(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)
