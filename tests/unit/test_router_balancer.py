"""Smooth weighted round robin and backend-set bookkeeping of the built-in router (no sockets)."""

from __future__ import annotations

from collections import Counter

import pytest

from shipyard.proxy import Backend, RouterServer
from shipyard.proxy.backends import BackendState, Balancer, split_address
from shipyard.proxy.metrics import Counters


def states(*weights: int) -> list[BackendState]:
    return [BackendState(Backend(f"127.0.0.1:{9000 + i}", w, f"r{i}", f"i{i}"), Counters())
            for i, w in enumerate(weights)]


def picks(balancer: Balancer, n: int, exclude: set[str] | None = None) -> Counter[str]:
    out: Counter[str] = Counter()
    for _ in range(n):
        s = balancer.pick(exclude)
        out[s.address if s else "none"] += 1
    return out


def test_exact_shares_over_a_cycle() -> None:
    b = Balancer()
    b.update(states(1, 4, 0))
    assert picks(b, 500) == {"127.0.0.1:9000": 100, "127.0.0.1:9001": 400}


def test_one_percent_canary_is_spread_not_bursty() -> None:
    b = Balancer()
    b.update(states(99, 1))
    seq = [b.pick().address for _ in range(200)]  # type: ignore[union-attr]
    assert seq.count("127.0.0.1:9001") == 2
    assert seq[:99].count("127.0.0.1:9001") <= 1


def test_no_positive_weight_gives_none() -> None:
    b = Balancer()
    b.update(states(0, 0))
    assert b.pick() is None
    b.update([])
    assert b.pick() is None


def test_exclude_skips_failed_backend_then_falls_back() -> None:
    b = Balancer()
    b.update(states(1, 1))
    assert picks(b, 10, {"127.0.0.1:9000"}) == {"127.0.0.1:9001": 10}
    assert picks(b, 2, {"127.0.0.1:9000", "127.0.0.1:9001"})["none"] == 0


def test_split_address() -> None:
    assert split_address("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_address("[::1]:8080") == ("::1", 8080)
    for bad in ("localhost", ":80", "host:port"):
        with pytest.raises(ValueError):
            split_address(bad)


def test_set_backends_validates_and_keeps_retired_state() -> None:
    r = RouterServer("api/stg", "127.0.0.1:0")
    with pytest.raises(ValueError):
        r.set_backends([Backend("127.0.0.1:1", -1, "r", "i")])
    with pytest.raises(ValueError):
        r.set_backends([Backend("127.0.0.1:1", 1, "r", "i"), Backend("127.0.0.1:1", 1, "r", "j")])
    r.set_backends([Backend("127.0.0.1:1", 1, "r1", "i1"), Backend("127.0.0.1:2", 0, "r2", "i2")])
    assert [b["weight"] for b in r.stats()["backends"]] == [1, 0]
    r.set_backends([Backend("127.0.0.1:2", 5, "r2", "i2")])
    assert [b["address"] for b in r.stats()["backends"]] == ["127.0.0.1:2"]
    assert "127.0.0.1:1" in r.states  # still known: drain() and counters need it
