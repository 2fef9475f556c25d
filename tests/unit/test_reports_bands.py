"""DORA bands at and around every boundary, and the year they come from."""

from __future__ import annotations

import pytest

from shipyard.reports import bands
from shipyard.reports.bands import (
    DAY,
    HOUR,
    MONTH,
    WEEK,
    change_failure_band,
    frequency_band,
    lead_time_band,
    recovery_band,
    worst,
)


def test_bands_are_those_of_the_2023_report() -> None:
    assert bands.BANDS_YEAR == 2023 and "2023" in bands.BANDS_SOURCE


@pytest.mark.parametrize(("per_day", "band"), [(5.0, "elite"), (1.0, "elite"), (0.999, "high"), (1 / 7, "high"),
                                               (1 / 7 - 1e-9, "medium"), (1 / 30, "medium"),
                                               (1 / 30 - 1e-9, "low"), (0.0, "low"), (None, None)])
def test_frequency(per_day: float | None, band: str | None) -> None:
    assert frequency_band(per_day) == band


@pytest.mark.parametrize(("seconds", "band"), [(0.0, "elite"), (DAY - 1, "elite"), (DAY, "high"), (WEEK - 1, "high"),
                                               (WEEK, "medium"), (MONTH - 1, "medium"), (MONTH, "low"),
                                               (None, None)])
def test_lead_time(seconds: float | None, band: str | None) -> None:
    assert lead_time_band(seconds) == band


@pytest.mark.parametrize(("seconds", "band"), [(59.0, "elite"), (HOUR - 0.001, "elite"), (HOUR, "high"),
                                               (DAY - 1, "high"), (DAY, "medium"), (WEEK - 1, "medium"),
                                               (WEEK, "low"), (None, None)])
def test_recovery(seconds: float | None, band: str | None) -> None:
    assert recovery_band(seconds) == band


@pytest.mark.parametrize(("rate", "band"), [(0.0, "elite"), (5.0, "elite"), (5.01, "high"), (10.0, "high"),
                                            (10.01, "medium"), (15.0, "medium"), (15.01, "low"), (100.0, "low"),
                                            (None, None)])
def test_change_failure(rate: float | None, band: str | None) -> None:
    assert change_failure_band(rate) == band


def test_worst_band() -> None:
    assert worst(["elite", "medium", None, "high"]) == "medium"
    assert worst([None, None]) is None
