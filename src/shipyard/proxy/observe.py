"""One router's numbers summed over the worker processes that serve it.

Each worker of a generation (workers.py) counts what it served itself; the lead asks them for an
observation (plain JSON over the channel) whenever someone reads stats or /metrics, and `Merged` puts
those together with its own server's numbers, in the shapes `RouterServer.stats()` and
`render_prometheus` already give, so no caller can tell one process from several.

A worker that dies takes its counts with it: the sums step back, which Prometheus reads as a counter
reset (as after any router restart).
"""

from __future__ import annotations

import os
from typing import Any

from .metrics import Counters, aggregate
from .server import RouterServer

Pair = tuple[str, str]
MAX_PAIRS = 250       # per router and worker in one answer (~180 bytes each): a channel message is <= 64 KiB


def _raw(c: Counters) -> list[Any]:
    return [c.requests, c.errors, c.retries, list(c.status), list(c.buckets), c.latency_sum, c.latency_count]


def _add_raw(total: Counters, raw: list[Any]) -> None:
    requests, errors, retries, status, buckets, latency_sum, latency_count = raw
    total.requests += int(requests)
    total.errors += int(errors)
    total.retries += int(retries)
    for i, n in enumerate(status[: len(total.status)]):
        total.status[i] += int(n)
    for i, n in enumerate(buckets[: len(total.buckets)]):
        total.buckets[i] += int(n)
    total.latency_sum += float(latency_sum)
    total.latency_count += int(latency_count)


def _process(server: RouterServer) -> dict[str, Any]:
    return {"pid": os.getpid(), "requests": sum(c.requests for _, c in server.pair_counters()),
            "in_flight": sum(s.in_flight for s in server.states.values())}


def observation(server: RouterServer) -> dict[str, Any]:
    """What a worker reports of one router: counters per (address, revision), live gauges, unrouted.

    Pairs of backends still routed to come first, so a router that has seen very many revisions (the
    counters of every pair are kept for the process's life) drops the oldest retired ones from the
    answer, never the live ones.
    """
    live = {s.address for s in server.current}
    pairs = sorted(server.pair_counters(), key=lambda kv: kv[0][0] not in live)[:MAX_PAIRS]
    gauges = {s.address: [s.in_flight, len(s.tunnels), s.backend.revision, s.backend.instance]
              for s in server.states.values() if s.in_flight or s.tunnels}
    return {**_process(server), "pairs": [[a, r, *_raw(c)] for (a, r), c in pairs], "gauges": gauges,
            "unrouted": server.unrouted}


class Merged:
    """A router as seen across its workers: the lead's RouterServer plus the workers' observations."""

    def __init__(self, server: RouterServer, observations: list[dict[str, Any]]) -> None:
        self.server = server
        self.name = server.name
        self.observations = observations
        self.unrouted = server.unrouted + sum(int(o.get("unrouted") or 0) for o in observations)
        totals: dict[Pair, Counters] = {}
        for key, c in server.pair_counters():
            c.add_into(totals.setdefault(key, Counters()))
        for o in observations:
            for address, revision, *raw in o.get("pairs") or []:
                _add_raw(totals.setdefault((str(address), str(revision)), Counters()), raw)
        self._pairs = sorted(totals.items())

    def pair_counters(self) -> list[tuple[Pair, Counters]]:
        return self._pairs

    def stats(self) -> dict[str, Any]:
        out = self.server.stats()
        rows = {row["address"]: row for row in [*out["backends"], *out["retired"]]}
        for o in self.observations:
            for address, (in_flight, tunnels, revision, instance) in (o.get("gauges") or {}).items():
                row = rows.get(address)
                if row is None:     # in flight only in a worker, on a backend no longer routed to
                    row = rows[address] = {"address": address, "weight": 0, "revision": revision,
                                           "instance": instance, "in_flight": 0, "open_tunnels": 0}
                    out["retired"].append(row)
                row["in_flight"] += int(in_flight)
                row["open_tunnels"] += int(tunnels)
        pairs = self._pairs
        out["per_backend"] = {k: c.as_dict() for k, c in aggregate((a, c) for (a, _), c in pairs).items()}
        out["per_revision"] = {k: c.as_dict() for k, c in aggregate((r, c) for (_, r), c in pairs).items()}
        out["unrouted"] = self.unrouted
        # Per process (the lead first): how evenly the kernel spreads connections, and who holds what.
        out["processes"] = [_process(self.server),
                            *({k: o.get(k) for k in ("pid", "requests", "in_flight")} for o in self.observations)]
        return out
