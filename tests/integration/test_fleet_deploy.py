"""Deploys to a fleet of namespaced hosts over SSH behind a real HAProxy, as a user runs them from the CLI:
`hosts setup` from empty hosts, a rolling deploy one host at a time under load with no failed request,
a failing release rolled back by itself, in-place deploys, and hosts that are unreachable before or lost
during a deploy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from host_fleet import Fleet, cli, events, haproxy_fleet, ok, served, version_of

from nethosts import HostFactory
from shipyard.demo.load import LoadRunner
from shipyard.testing.fleet import commit_version, create_fleet_workspace
from shipyard.testing.receivers import free_port

pytestmark = [pytest.mark.nethosts, pytest.mark.haproxy, pytest.mark.timeout(420)]


@pytest.fixture
def surge_fleet(nethosts: HostFactory, tmp_path: Path) -> Iterator[Fleet]:
    with haproxy_fleet(nethosts, tmp_path, 3, strategy="{type: rolling, per: host, batch: one_at_a_time, "
                                                       "drain_timeout: 5s}") as f:
        yield f


@pytest.fixture
def in_place_fleet(nethosts: HostFactory, tmp_path: Path) -> Iterator[Fleet]:
    with haproxy_fleet(nethosts, tmp_path, 3, mode="in_place",
                       strategy="{type: rolling, per: host, minimum_healthy_hosts: 1, drain_timeout: 5s}") as f:
        yield f


def test_one_host_at_a_time_behind_haproxy_then_a_failing_release_rolls_back(
        surge_fleet: Fleet) -> None:
    ws, hx, hosts = surge_fleet
    first = ok(cli(ws, "deploy", "api", "--env", "prod", "--json")).json()
    assert first["state"] == "succeeded", first
    assert set(served(hx)) == {f"{h.address}:8080" for h in hosts}
    assert version_of(hx)["version"] == "1.0.0"

    v2 = commit_version(ws, "2.0.0")
    load = LoadRunner(f"{hx.url}/version", 40, timeout=5.0).start()
    try:
        second = cli(ws, "deploy", "api", "--env", "prod", "--json")
    finally:
        result = load.stop(timeout=30)
    assert ok(second).json()["state"] == "succeeded" and second.json()["revision"] == v2, str(second)
    assert result.total >= 40 and result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
    assert set(served(hx)) == {f"{h.address}:8081" for h in hosts}
    # Whole hosts in the configured order: web-1's new instance serves before web-2's, and so on.
    changes = [e for e in events(ws, second.json()["id"]) if e["kind"] == "traffic.changed"]
    first_seen = []
    for change in changes:
        for backend in change["data"]["backends"]:
            host = next(h.name for h in hosts if backend["address"].startswith(h.address + ":"))
            if backend["revision"] == v2 and backend["weight"] > 0 and host not in first_seen:
                first_seen.append(host)
    assert first_seen == ["web-1", "web-2", "web-3"], changes

    status = ok(cli(ws, "status", "--json")).json()["status"][0]
    assert {i["host"] for i in status["instances"] if i["traffic_percent"] > 0} == {"web-1", "web-2", "web-3"}
    assert all(h["reachable"] for h in status["hosts"].values()), status

    commit_version(ws, "3.0.0", fail_health=True)
    load = LoadRunner(f"{hx.url}/version", 40, timeout=5.0).start()
    try:
        third = cli(ws, "deploy", "api", "--env", "prod", "--json")
    finally:
        result = load.stop(timeout=30)
    assert third.returncode == 1 and third.json()["state"] == "rolled_back", str(third)
    assert result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
    assert version_of(hx)["revision"] == v2
    assert set(served(hx)) == {f"{h.address}:8081" for h in hosts}

    # A host that does not answer before a deploy refuses it by name (no minimum_healthy_hosts is set).
    hosts[1].cut()
    try:
        refused = cli(ws, "deploy", "api", "--env", "prod")
    finally:
        hosts[1].restore()
    assert refused.returncode == 1, str(refused)
    assert "web-2" in refused.stderr and "minimum_healthy_hosts" in refused.stderr, str(refused)
    assert version_of(hx)["revision"] == v2


def test_in_place_within_minimum_healthy_hosts_and_an_unreachable_host_skipped(
        in_place_fleet: Fleet) -> None:
    ws, hx, hosts = in_place_fleet
    ok(cli(ws, "deploy", "api", "--env", "prod"))
    v2 = commit_version(ws, "2.0.0")
    load = LoadRunner(f"{hx.url}/version", 40, timeout=5.0).start()
    try:
        second = cli(ws, "deploy", "api", "--env", "prod", "--json")
    finally:
        result = load.stop(timeout=30)
    assert ok(second).json()["revision"] == v2
    assert result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
    assert set(served(hx)) == {f"{h.address}:8080" for h in hosts}      # in place: the same ports

    # A failing release in place is restored host by host, still without a failed request.
    commit_version(ws, "3.0.0", fail_health=True)
    load = LoadRunner(f"{hx.url}/version", 40, timeout=5.0).start()
    try:
        third = cli(ws, "deploy", "api", "--env", "prod", "--json")
    finally:
        result = load.stop(timeout=30)
    assert third.returncode == 1 and third.json()["state"] == "rolled_back", str(third)
    assert result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
    assert version_of(hx)["revision"] == v2 and len(served(hx)) == 3

    # web-3 unreachable: minimum_healthy_hosts 1 still holds with a host left to deploy to: skipped, recorded.
    v4 = commit_version(ws, "4.0.0")
    hosts[2].cut()
    try:
        fourth = cli(ws, "deploy", "api", "--env", "prod", "--json")
    finally:
        hosts[2].restore()
    assert ok(fourth).json()["revision"] == v4, str(fourth)
    skipped = [e for e in events(ws, fourth.json()["id"]) if e["kind"] == "hosts.skipped"]
    assert skipped and "web-3" in skipped[0]["data"]["skipped"], skipped
    assert {a for a in served(hx)} == {f"{h.address}:8080" for h in hosts[:2]}


def test_the_builtin_router_fronts_instances_on_hosts(nethosts: HostFactory, tmp_path: Path) -> None:
    hosts = [nethosts.add(f"web-{n + 1}") for n in range(2)]
    port = free_port()
    ws = create_fleet_workspace(tmp_path / "ws", hosts, Path(hosts[0].client_key),
                                router=f'{{type: builtin, listen: "127.0.0.1:{port}"}}',
                                strategy="{type: rolling, per: host, drain_timeout: 2s}")
    try:
        ok(cli(ws, "hosts", "setup", timeout=300))
        ok(cli(ws, "deploy", "api", "--env", "prod"))
        v2 = commit_version(ws, "2.0.0")
        load = LoadRunner(f"http://127.0.0.1:{port}/version", 30, timeout=5.0).start()
        try:
            ok(cli(ws, "deploy", "api", "--env", "prod"))
        finally:
            result = load.stop(timeout=30)
        assert result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
        import urllib.request

        seen = set()
        for _ in range(10):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as resp:
                body = json.load(resp)
            assert body["revision"] == v2
            seen.add(body["host"])
        assert seen == {"web-1", "web-2"}
    finally:
        cli(ws, "agent", "stop")
