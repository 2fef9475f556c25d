"""Metrics from any HTTP endpoint that answers JSON: the escape hatch for in-house monitoring.

GET `{url}?metric=..&start=..&end=..&step=..&<labels>` must answer either
`{"samples": [{"at": epoch, "value": number, "labels": {...}}, ...]}` or `[[epoch, value], ...]`.
"""

from __future__ import annotations

from typing import Any

import httpx

from shipyard.errors import MonitoringError
from shipyard.monitoring.base import Sample, Window


class HttpJsonProvider:
    def __init__(self, url: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0) -> None:
        self.url, self.headers, self.timeout = url, dict(headers or {}), timeout

    async def query(self, metric: str, window: Window, *, labels: dict[str, str] | None = None) -> list[Sample]:
        params: dict[str, Any] = {"metric": metric, "start": window.start, "end": window.end,
                                  "step": window.step, **(labels or {})}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                resp = await client.get(self.url, params=params, headers=self.headers)
            resp.raise_for_status()
            body = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MonitoringError(f"metrics endpoint {self.url} failed: {exc}") from exc
        rows = body.get("samples", []) if isinstance(body, dict) else body
        out: list[Sample] = []
        try:
            for row in rows:
                if isinstance(row, dict):
                    out.append(Sample(float(row["at"]), float(row["value"]), dict(row.get("labels") or labels or {})))
                else:
                    out.append(Sample(float(row[0]), float(row[1]), dict(labels or {})))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise MonitoringError(f"metrics endpoint {self.url} answered an unexpected shape: {exc}") from exc
        return [s for s in out if window.start <= s.at < window.end]
