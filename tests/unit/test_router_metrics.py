"""Counters, fixed latency buckets and the Prometheus text of the built-in router (no sockets)."""

from __future__ import annotations

from shipyard.proxy import Backend, RouterServer, render_prometheus
from shipyard.proxy.metrics import BUCKETS, Counters


def test_record_counts_status_classes_and_buckets() -> None:
    c = Counters()
    c.record(200, 0.0004)
    c.record(204, 0.003)
    c.record(503, 30.0)
    c.record(101, 0.001)
    d = c.as_dict()
    assert (d["requests"], d["1xx"], d["2xx"], d["5xx"]) == (4, 1, 2, 1)
    assert d["latency_buckets"]["0.001"] == 2  # le is inclusive
    assert d["latency_buckets"]["0.005"] == 3
    assert d["latency_buckets"]["10"] == 3  # 30 s is only in +Inf
    assert d["latency_buckets"]["+Inf"] == 4 == d["latency_count"]
    assert len(d["latency_buckets"]) == len(BUCKETS) + 1


def test_stats_aggregate_per_backend_and_per_revision() -> None:
    r = RouterServer("web/prod", "127.0.0.1:0")
    r.set_backends([Backend("127.0.0.1:1", 1, "aaa", "i1"), Backend("127.0.0.1:2", 1, "aaa", "i2")])
    r.states["127.0.0.1:1"].counters.record(200, 0.01)
    r.states["127.0.0.1:2"].counters.record(500, 0.02)
    r.states["127.0.0.1:2"].counters.errors += 1
    r.set_backends([Backend("127.0.0.1:2", 1, "bbb", "i3")])  # recycled port, new revision
    r.states["127.0.0.1:2"].counters.record(200, 0.01)
    s = r.stats()
    assert s["per_revision"]["aaa"]["requests"] == 2 and s["per_revision"]["aaa"]["errors"] == 1
    assert s["per_revision"]["bbb"]["requests"] == 1
    assert s["per_backend"]["127.0.0.1:2"]["requests"] == 2


def test_prometheus_text() -> None:
    r = RouterServer('we"ird/env', "127.0.0.1:0")
    r.set_backends([Backend("127.0.0.1:1", 3, "abc", "i1")])
    r.states["127.0.0.1:1"].counters.record(200, 0.002)
    text = render_prometheus([r])
    lab = 'service_env="we\\"ird/env",backend="127.0.0.1:1",revision="abc"'
    assert f"shipyard_router_requests_total{{{lab}}} 1" in text
    assert f'shipyard_router_responses_total{{{lab},code="2xx"}} 1' in text
    assert f'shipyard_router_request_duration_seconds_bucket{{{lab},le="0.001"}} 0' in text
    assert f'shipyard_router_request_duration_seconds_bucket{{{lab},le="0.0025"}} 1' in text
    assert f"shipyard_router_request_duration_seconds_count{{{lab}}} 1" in text
    assert f"shipyard_router_backend_weight{{{lab}}} 3" in text
    assert text.count("# TYPE shipyard_router_requests_total counter") == 1
    assert text.endswith("\n")
