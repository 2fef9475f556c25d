"""Faults on a fleet behind HAProxy: the CLI SIGKILLed mid-deploy then `shipyard recover` leaves one
revision serving on every host, and a host whose link goes down mid-deploy is left out while
minimum_healthy_hosts still holds (the deploy carries on and says which host it lost)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from host_fleet import Fleet, cli, events, haproxy_fleet, ok, served, version_of

from nethosts import HostFactory
from shipyard.demo.load import LoadRunner
from shipyard.testing.fleet import commit_version

pytestmark = [pytest.mark.nethosts, pytest.mark.haproxy, pytest.mark.timeout(420)]


@pytest.fixture
def fleet(nethosts: HostFactory, tmp_path: Path) -> Iterator[Fleet]:
    def keepalive(text: str) -> str:
        return text.replace("connect_timeout: 3s}", "connect_timeout: 3s, keepalive: 1s}")

    with haproxy_fleet(nethosts, tmp_path, 3, edit_config=keepalive,
                       strategy="{type: rolling, per: host, minimum_healthy_hosts: 1, "
                                "batch: one_at_a_time, drain_timeout: 3s}") as f:
        ok(cli(f[0], "deploy", "api", "--env", "prod"))
        yield f


def test_a_killed_deploy_is_recovered_to_one_revision_on_every_host(fleet: Fleet) -> None:
    ws, hx, hosts = fleet
    v1 = version_of(hx)["revision"]
    commit_version(ws, "2.0.0")
    # Killed right after web-1's new instance took its traffic (step 4: the first route).
    killed = cli(ws, "deploy", "api", "--env", "prod", SHIPYARD_FAILPOINT="after-step:3")
    assert killed.returncode == -9, str(killed)
    mixed = {a.rsplit(":", 1)[1] for a in served(hx)}
    assert mixed == {"8080", "8081"}, served(hx)            # two revisions serving: what recover must undo
    load = LoadRunner(f"{hx.url}/version", 30, timeout=5.0).start()
    try:
        recovered = ok(cli(ws, "recover", "--json")).json()
    finally:
        result = load.stop(timeout=30)
    assert [r["state"] for r in recovered["recovered"]] == ["rolled_back"], recovered
    assert result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
    assert set(served(hx)) == {f"{h.address}:8080" for h in hosts}
    assert version_of(hx)["revision"] == v1


def test_a_host_cut_mid_deploy_is_left_out_within_minimum_healthy_hosts(fleet: Fleet) -> None:
    ws, hx, hosts = fleet
    web3 = hosts[2]
    # The cut happens inside the deploy, right after web-1's new instance starts (a hook runs it).
    text = ws.config_path.read_text().replace(
        "    env: {BIND_HOST: 0.0.0.0}\n",
        f"    env: {{BIND_HOST: 0.0.0.0}}\n    hooks: {{application_start: \"ip link set {web3.link} down\"}}\n")
    ws.config_path.write_text(text)
    v2 = commit_version(ws, "2.0.0")
    load = LoadRunner(f"{hx.url}/version", 30, timeout=5.0).start()
    try:
        res = cli(ws, "deploy", "api", "--env", "prod", "--json", timeout=300)
    finally:
        result = load.stop(timeout=30)
        web3.restore()
    out: dict[str, Any] = ok(res).json()
    assert out["state"] == "succeeded" and out["revision"] == v2, str(res)
    lost = [e for e in events(ws, out["id"]) if e["kind"] == "host.lost"]
    assert lost and lost[0]["data"]["host"] == "web-3" and lost[0]["data"]["carry_on"] is True, lost
    assert set(served(hx)) == {f"{h.address}:8081" for h in hosts[:2]}
    # Requests that web-3 held when its link went down fail (nothing can answer them); no others do.
    assert result.failed <= 5, f"{result.summary()}; {result.failures[:5]}"
