"""Request counters and latency histograms for the built-in router.

Metrics sit on the per-request path, never on the per-byte path: one ``Counters.record`` call per
finished response does a handful of integer additions and one ``bisect`` into fixed buckets. Everything
that costs more (cumulating buckets, summing per backend / per revision, text rendering) happens only
when someone reads the numbers (``stats()`` or the Prometheus endpoint).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from typing import Any, Protocol

# Fixed upper bounds (seconds); a sample goes into the first bucket whose bound is >= the sample.
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class Counters:
    """Counters for one (backend address, revision) pair.

    Keyed by the pair rather than by address alone so that an address reused by a later revision (a new
    instance on a recycled port) never mixes its numbers into the old revision's series.
    """

    __slots__ = ("buckets", "errors", "latency_count", "latency_sum", "requests", "retries", "status")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.retries = 0
        self.status = [0, 0, 0, 0, 0, 0]  # index = status // 100 (0 unused, 1..5 = 1xx..5xx)
        self.buckets = [0] * (len(BUCKETS) + 1)  # non-cumulative; last slot = above the largest bound
        self.latency_sum = 0.0
        self.latency_count = 0

    def record(self, status: int, latency: float) -> None:
        """Count one finished response (hot path: keep it to integer adds and one bisect)."""
        self.requests += 1
        cls = status // 100
        if 0 < cls < 6:
            self.status[cls] += 1
        self.buckets[bisect_left(BUCKETS, latency)] += 1
        self.latency_sum += latency
        self.latency_count += 1

    def add_into(self, total: Counters) -> None:
        """Accumulate this pair's numbers into an aggregate (per backend or per revision)."""
        total.requests += self.requests
        total.errors += self.errors
        total.retries += self.retries
        for i, n in enumerate(self.status):
            total.status[i] += n
        for i, n in enumerate(self.buckets):
            total.buckets[i] += n
        total.latency_sum += self.latency_sum
        total.latency_count += self.latency_count

    def cumulative(self) -> list[int]:
        """Bucket counts as Prometheus wants them: each bound counts every sample <= it."""
        out: list[int] = []
        running = 0
        for n in self.buckets[: len(BUCKETS)]:
            running += n
            out.append(running)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view used by ``RouterServer.stats()``."""
        data: dict[str, Any] = {"requests": self.requests}
        for i, name in enumerate(STATUS_CLASSES, start=1):
            data[name] = self.status[i]
        data["errors"] = self.errors
        data["retries"] = self.retries
        data["latency_buckets"] = {_le(b): n for b, n in zip(BUCKETS, self.cumulative(), strict=True)}
        data["latency_buckets"]["+Inf"] = self.latency_count
        data["latency_sum"] = round(self.latency_sum, 6)
        data["latency_count"] = self.latency_count
        return data


def _le(bound: float) -> str:
    """Bucket label as Prometheus prints it ("0.001", "1", "2.5")."""
    text = repr(bound)
    return text[:-2] if text.endswith(".0") else text


def aggregate(pairs: Iterable[tuple[str, Counters]]) -> dict[str, Counters]:
    """Sum pair counters by key (address or revision)."""
    out: dict[str, Counters] = {}
    for key, counters in pairs:
        total = out.get(key)
        if total is None:
            total = out[key] = Counters()
        counters.add_into(total)
    return out


class Observed(Protocol):
    """What the exposition reads of a router (``server.RouterServer``)."""

    name: str
    unrouted: int

    def pair_counters(self) -> list[tuple[tuple[str, str], Counters]]: ...

    def stats(self) -> dict[str, Any]: ...


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_prometheus(routers: Iterable[Observed]) -> str:
    """Prometheus text exposition (format 0.0.4) of every router's counters and histograms.

    Series are labelled ``service_env``, ``backend`` and ``revision`` so a canary judge can query one
    revision's error rate or latency across all its instances with a plain ``sum by (revision)``.
    """
    families: dict[str, tuple[str, str, list[str]]] = {
        "requests": ("shipyard_router_requests_total", "counter", []),
        "responses": ("shipyard_router_responses_total", "counter", []),
        "errors": ("shipyard_router_errors_total", "counter", []),
        "retries": ("shipyard_router_retries_total", "counter", []),
        "latency": ("shipyard_router_request_duration_seconds", "histogram", []),
        "in_flight": ("shipyard_router_in_flight_requests", "gauge", []),
        "tunnels": ("shipyard_router_open_tunnels", "gauge", []),
        "weight": ("shipyard_router_backend_weight", "gauge", []),
        "unrouted": ("shipyard_router_unrouted_total", "counter", []),
    }
    helps = {
        "requests": "Requests answered through the router (including proxy-generated 502/504).",
        "responses": "Responses by status class.",
        "errors": "Proxy-generated 502/504 and failed connection attempts.",
        "retries": "Attempts sent again after a failure (retry_on: never sent, or no byte back and idempotent).",
        "latency": "Time from the request head arriving to the response finishing.",
        "in_flight": "HTTP requests currently being proxied to the backend.",
        "tunnels": "Open upgraded (websocket) tunnels through the backend.",
        "weight": "Current routing weight of the backend (absent once removed from the set).",
        "unrouted": "Requests answered 503 because no backend had weight > 0.",
    }
    for router in routers:
        se = _esc(router.name)
        for (address, revision), c in router.pair_counters():
            lab = f'service_env="{se}",backend="{_esc(address)}",revision="{_esc(revision)}"'
            families["requests"][2].append(f"{families['requests'][0]}{{{lab}}} {c.requests}")
            for i, cls in enumerate(STATUS_CLASSES, start=1):
                families["responses"][2].append(
                    f'{families["responses"][0]}{{{lab},code="{cls}"}} {c.status[i]}'
                )
            families["errors"][2].append(f"{families['errors'][0]}{{{lab}}} {c.errors}")
            families["retries"][2].append(f"{families['retries'][0]}{{{lab}}} {c.retries}")
            name = families["latency"][0]
            lines = families["latency"][2]
            for bound, n in zip(BUCKETS, c.cumulative(), strict=True):
                lines.append(f'{name}_bucket{{{lab},le="{_le(bound)}"}} {n}')
            lines.append(f'{name}_bucket{{{lab},le="+Inf"}} {c.latency_count}')
            lines.append(f"{name}_sum{{{lab}}} {c.latency_sum:.6f}")
            lines.append(f"{name}_count{{{lab}}} {c.latency_count}")
        for b in router.stats()["backends"]:
            lab = (
                f'service_env="{se}",backend="{_esc(b["address"])}",revision="{_esc(b["revision"])}"'
            )
            families["in_flight"][2].append(f"{families['in_flight'][0]}{{{lab}}} {b['in_flight']}")
            families["tunnels"][2].append(f"{families['tunnels'][0]}{{{lab}}} {b['open_tunnels']}")
            families["weight"][2].append(f"{families['weight'][0]}{{{lab}}} {b['weight']}")
        families["unrouted"][2].append(f'{families["unrouted"][0]}{{service_env="{se}"}} {router.unrouted}')
    out: list[str] = []
    for key, (name, kind, lines) in families.items():
        out.append(f"# HELP {name} {helps[key]}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines)
    return "\n".join(out) + "\n"
