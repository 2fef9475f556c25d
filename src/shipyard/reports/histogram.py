"""Log-bucket histograms of seconds: how pruned days keep their percentiles (durations, time to restore).

A value v >= MIN goes to bucket floor(log(v) / log(BASE)) with BASE = 2**(1/16); values below MIN (0 and
sub-millisecond) go to the bucket "z". A bucket stands for its geometric middle BASE**(i + 0.5) ("z" for
0), so a percentile read from a histogram is within RESOLUTION (2.2%, relative) of the exact nearest-rank
value, and below MIN it is off by at most MIN. Histograms are {bucket: count} dicts with string keys (they
are stored as JSON) and merge by adding counts; percentiles mix them with exact values
(`merged_percentile`) for a period that is partly pruned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final

BASE: Final = 2 ** (1 / 16)
MIN: Final = 0.001
ZERO: Final = "z"
RESOLUTION: Final = BASE ** 0.5 - 1          # ~0.0219: the largest relative error of a bucket's value
_LOG_BASE: Final = math.log(BASE)


def bucket(value: float) -> str:
    if value < MIN:
        return ZERO
    # the small epsilon keeps exact powers of BASE in their own bucket despite float rounding
    return str(math.floor(math.log(value) / _LOG_BASE + 1e-9))


def bucket_value(key: str) -> float:
    return 0.0 if key == ZERO else BASE ** (int(key) + 0.5)


def histogram(values: Iterable[float]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        key = bucket(v)
        out[key] = out.get(key, 0) + 1
    return out


def merge(into: dict[str, int], other: Mapping[str, int]) -> dict[str, int]:
    """Add `other`'s counts to `into` (in place) and return it."""
    for key, n in other.items():
        into[key] = into.get(key, 0) + int(n)
    return into


def merged_percentile(exact: Iterable[float], hist: Mapping[str, int], p: int) -> float | None:
    """The nearest-rank p-th percentile (rank ceil(p*n/100)) of the exact values and the histogram's
    buckets (each at its value) together; None when both are empty."""
    items = [(float(v), 1) for v in exact] + [(bucket_value(k), int(n)) for k, n in hist.items() if int(n) > 0]
    total = sum(n for _, n in items)
    if not total:
        return None
    rank = max(1, (p * total + 99) // 100)
    seen = 0
    for value, n in sorted(items):
        seen += n
        if seen >= rank:
            return value
    return items[-1][0]     # unreachable: the ranks add up to total
