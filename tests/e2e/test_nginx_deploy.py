"""`shipyard deploy` of a service behind a real nginx (router type nginx, local target): a rolling v2 under
steady load fails no request, nginx's workers serve exactly the new instances, and a release that fails its
health check is rolled back without nginx ever being pointed at it, and an nginx.conf that `nginx -t` refuses
stops the deploy before traffic moves, with nginx's reason, the old upstream still serving."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.demo.load import LoadRunner
from shipyard.demo.workspace import commit_version
from shipyard.routers.nginx import LocalExecutor, NginxRouter
from shipyard.testing.nginx import Nginx, nginx_binary, nginx_process

from .conftest import E2E, assert_ok, behind_proxy, get_version

pytestmark = [pytest.mark.nginx, pytest.mark.timeout(240)]


@pytest.fixture
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2E, Nginx]]:
    binary = nginx_binary()
    with behind_proxy(tmp_path_factory.mktemp("ngx") / "ws", binary, "nginx is missing (scripts/bootstrap installs it)",
                      lambda binary, port: nginx_process(binary, port=port),
                      lambda ngx: f'{{type: nginx, upstream: {ngx.upstream}, file: "{ngx.upstream_file}", '
                                  f'conf: "{ngx.conf}", status: "{ngx.status}", binary: "{binary}", '
                                  f'listen: "{ngx.listen}"}}') as both:
        yield both


def served(ngx: Nginx) -> set[str]:
    router = NginxRouter(LocalExecutor(), upstream=ngx.upstream, file=ngx.upstream_file, conf=ngx.conf,
                         status=ngx.status, binary=nginx_binary() or "nginx")
    return {b.address for b in asyncio.run(router.backends()) if b.weight > 0}


def test_rolling_deploy_behind_nginx_fails_no_request(behind_nginx: tuple[E2E, Nginx]) -> None:
    e2e, ngx = behind_nginx
    first = assert_ok(e2e.deploy("api", "--json"))
    assert first.json()["state"] == "succeeded", str(first)
    assert get_version(e2e.ws.api_port)["version"] == "1.0.0"
    sha = commit_version(e2e.ws, "api", "2.0.0")
    load = LoadRunner(f"{ngx.url}/version", 50, timeout=5.0).start()
    try:
        res = e2e.deploy("api", "--json")
        time.sleep(0.5)
    finally:
        result = load.stop(timeout=30)
    assert_ok(res)
    assert res.json()["state"] == "succeeded" and res.json()["revision"] == sha, str(res)
    assert result.total >= 50 and result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
    v2 = {i["address"] for i in e2e.agent_instances() if i.get("revision") == sha and i.get("state") == "running"}
    assert served(ngx) == v2 and len(v2) == 3

    commit_version(e2e.ws, "api", "3.0.0", health_fail=True)
    failed = e2e.deploy("api", "--json")
    assert failed.returncode == 1 and failed.json()["state"] == "rolled_back", str(failed)
    assert get_version(e2e.ws.api_port)["revision"] == sha
    assert served(ngx) == v2

    # Someone broke nginx.conf: the first traffic change is refused by `nginx -t`; the file is put back, the
    # deploy rolls back with nginx's one line (routing back to v2 is no change: no reload needed) and stops
    # the v4 instances, v2 serving everything throughout.
    kept = Path(ngx.upstream_file).read_text()
    conf = Path(ngx.conf)
    conf.write_text(conf.read_text().replace("worker_processes 1;", "worker_processes 1;\nbogus_directive on;"))
    v4 = commit_version(e2e.ws, "api", "4.0.0")
    refused = e2e.deploy("api", "--json")
    assert refused.returncode == 1 and refused.json()["state"] == "rolled_back", str(refused)
    assert 'nginx -t refused the configuration (previous upstream kept): [emerg] unknown directive ' \
           '"bogus_directive"' in refused.json()["reason"], str(refused)
    assert not [i for i in e2e.agent_instances() if i.get("revision") == v4 and i.get("state") == "running"]
    assert Path(ngx.upstream_file).read_text() == kept
    assert get_version(e2e.ws.api_port)["revision"] == sha
    assert served(ngx) == v2
