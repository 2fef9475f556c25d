"""DORA performance bands (elite, high, medium, low), as published in one State of DevOps report.

The thresholds are those of the 2023 Accelerate State of DevOps Report (DORA, Google Cloud), whose four
clusters were described as:

- elite: deploys on demand (several a day); lead time under a day; 5% failed changes; recovery under an hour;
- high: between once a day and once a week; a day to a week; 10%; under a day;
- medium: between once a week and once a month; a week to a month; 15%; a day to a week;
- low: between once a week and once a month; a week to a month; 64%; a month to six months.

The report gives each cluster's typical value, not boundaries, and its medium and low clusters share the
same frequency and lead-time ranges, so the boundaries used here are stated as code:
- frequency: elite at least one successful deploy a day on average, high at least one a week, medium at
  least one a month (30 days), low below that (where no 2023 cluster lies);
- lead time (median): elite under a day, high under a week, medium under a month (30 days), low otherwise;
- change failure rate: elite at most 5%, high at most 10%, medium at most 15%, low above 15%;
- recovery time (median): elite under an hour, high under a day, medium under a week, low otherwise.
Another year's bands are another table; `BANDS_YEAR` says which one a report used.
"""

from __future__ import annotations

from typing import Final

BANDS_YEAR: Final = 2023
BANDS_SOURCE: Final = "Accelerate State of DevOps Report 2023 (DORA)"
ORDER: Final = ("elite", "high", "medium", "low")

HOUR: Final = 3600.0
DAY: Final = 24 * HOUR
WEEK: Final = 7 * DAY
MONTH: Final = 30 * DAY

# (band, inclusive lower bound of deploys per day)
FREQUENCY: Final = (("elite", 1.0), ("high", 1.0 / 7), ("medium", 1.0 / 30))
# (band, exclusive upper bound in seconds)
LEAD_TIME: Final = (("elite", DAY), ("high", WEEK), ("medium", MONTH))
RECOVERY: Final = (("elite", HOUR), ("high", DAY), ("medium", WEEK))
# (band, inclusive upper bound in percent)
CHANGE_FAILURE: Final = (("elite", 5.0), ("high", 10.0), ("medium", 15.0))


def frequency_band(per_day: float | None) -> str | None:
    """Band of an average number of successful deploys per day (None: no period to divide by)."""
    if per_day is None:
        return None
    return next((band for band, floor in FREQUENCY if per_day >= floor), "low")


def lead_time_band(median_seconds: float | None) -> str | None:
    if median_seconds is None:
        return None
    return next((band for band, ceiling in LEAD_TIME if median_seconds < ceiling), "low")


def recovery_band(median_seconds: float | None) -> str | None:
    if median_seconds is None:
        return None
    return next((band for band, ceiling in RECOVERY if median_seconds < ceiling), "low")


def change_failure_band(rate_percent: float | None) -> str | None:
    if rate_percent is None:
        return None
    return next((band for band, ceiling in CHANGE_FAILURE if rate_percent <= ceiling), "low")


def worst(bands: list[str | None]) -> str | None:
    """The lowest of the given bands (None ones ignored)."""
    known = [b for b in bands if b is not None]
    return max(known, key=ORDER.index) if known else None
