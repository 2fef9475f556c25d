"""Faults on a fleet behind HAProxy: the CLI SIGKILLed mid-deploy then `shipyard recover` leaves one
revision serving on every host, and a host whose link goes down mid-deploy is left out while
minimum_healthy_hosts still holds (the deploy carries on and says which host it lost)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_fleet_deploy import events, ok, served, version_of

from nethosts import HostFactory, TestHost
from shipyard.demo.load import LoadRunner
from shipyard.testing.cli import CliResult, run_cli
from shipyard.testing.fleet import FleetWorkspace, commit_version, create_fleet_workspace
from shipyard.testing.haproxy import Haproxy, haproxy_binary, haproxy_process
from shipyard.testing.receivers import free_port
from shipyard.testing.servers import missing_server

pytestmark = [pytest.mark.nethosts, pytest.mark.haproxy, pytest.mark.timeout(420)]
Fleet = tuple[FleetWorkspace, Haproxy, list[TestHost]]


def cli(ws: FleetWorkspace, *args: str, timeout: float = 180, **extra: str) -> CliResult:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(CI="true", NO_COLOR="1", COLUMNS="200", PYTHONUNBUFFERED="1", **extra)
    res = run_cli(ws.root, *args, env=env, timeout=timeout)
    assert "Traceback" not in res.stderr, str(res)
    return res


@pytest.fixture
def fleet(nethosts: HostFactory, tmp_path: Path) -> Iterator[Fleet]:
    binary = haproxy_binary()
    if binary is None:
        missing_server("haproxy is missing (scripts/bootstrap installs it)")
    hosts = [nethosts.add(f"web-{n + 1}") for n in range(3)]
    with haproxy_process(binary, slots=12, port=free_port()) as hx:
        router = f'{{type: haproxy, socket: "{hx.socket}", backend: {hx.backend}, listen: "{hx.listen}"}}'
        ws = create_fleet_workspace(tmp_path / "ws", hosts, Path(hosts[0].client_key), router=router,
                                    strategy="{type: rolling, per: host, minimum_healthy_hosts: 1, "
                                             "batch: one_at_a_time, drain_timeout: 3s}")
        text = ws.config_path.read_text().replace("connect_timeout: 3s}", "connect_timeout: 3s, keepalive: 1s}")
        ws.config_path.write_text(text)
        ok(cli(ws, "hosts", "setup", timeout=300))
        ok(cli(ws, "deploy", "api", "--env", "prod"))
        yield ws, hx, hosts


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
