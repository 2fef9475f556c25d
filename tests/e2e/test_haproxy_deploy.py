"""`shipyard deploy` of a service behind a real HAProxy (router type haproxy, local target): v1 is served
through HAProxy's frontend, then a rolling v2 under steady load fails no request, and HAProxy's slots end
holding exactly the new instances (the old ones drained into maintenance)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from shipyard.demo.load import LoadRunner
from shipyard.demo.workspace import commit_version
from shipyard.routers.haproxy import HaproxyRouter, UnixSocketChannel
from shipyard.testing.haproxy import Haproxy, haproxy_binary, haproxy_process

from .conftest import E2E, assert_ok, behind_proxy, get_version

pytestmark = [pytest.mark.haproxy, pytest.mark.timeout(240)]


@pytest.fixture
def behind_haproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2E, Haproxy]]:
    with behind_proxy(tmp_path_factory.mktemp("hx") / "ws", haproxy_binary(),
                      "haproxy is missing (scripts/bootstrap installs it)",
                      lambda binary, port: haproxy_process(binary, slots=8, port=port),
                      lambda hx: f'{{type: haproxy, socket: "{hx.socket}", backend: app, '
                                 f'listen: "127.0.0.1:{hx.port}"}}') as both:
        yield both


def served(hx: Haproxy) -> set[tuple[str, int]]:
    router = HaproxyRouter(UnixSocketChannel(hx.socket), hx.backend)
    return {(b.address, b.weight) for b in asyncio.run(router.backends())}


def test_rolling_deploy_behind_haproxy_fails_no_request(behind_haproxy: tuple[E2E, Haproxy]) -> None:
    e2e, hx = behind_haproxy
    first = assert_ok(e2e.deploy("api", "--json"))
    assert first.json()["state"] == "succeeded", str(first)
    assert first.json().get("address") in (None, hx.listen, f"http://{hx.listen}"), str(first)
    assert get_version(hx.port)["version"] == "1.0.0"
    v1 = {i["address"] for i in e2e.agent_instances() if i.get("revision") == first.json()["revision"]
          and i.get("state") == "running"}
    assert {a for a, _ in served(hx)} == v1 and len(v1) == 3

    sha = commit_version(e2e.ws, "api", "2.0.0")
    load = LoadRunner(f"{hx.url}/version", 50, timeout=5.0).start()
    try:
        res = e2e.deploy("api", "--json")
        time.sleep(0.5)      # a little steady load after the last switch, too
    finally:
        result = load.stop(timeout=30)
    assert_ok(res)
    assert res.json()["state"] == "succeeded" and res.json()["revision"] == sha, str(res)
    assert result.total >= 50, result.summary()
    assert result.failed == 0, f"{result.summary()}; first failures: {result.failures[:5]}"
    body = get_version(hx.port)
    assert (body["version"], body["revision"]) == ("2.0.0", sha)
    v2 = {i["address"] for i in e2e.agent_instances() if i.get("revision") == sha and i.get("state") == "running"}
    assert {a for a, _ in served(hx)} == v2 and len(v2) == 3
    status = assert_ok(e2e.cli("status", "--json"))
    row = next(r for r in status.json()["status"] if r["service"] == "api" and r["env"] == "stg")
    assert "router_error" not in row, str(status)
    assert {i["address"]: i["traffic_percent"] for i in row["instances"] if i["traffic_percent"] > 0} == {
        a: round(100 / 3, 1) for a in v2}
