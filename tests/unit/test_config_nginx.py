"""`router: {type: nginx, ...}` and `host:` on the haproxy and nginx routers: what loads, the one-line errors
for what does not (a router host not under `hosts:` included), and what Project.router() builds of it:
an nginx driven here or over SSH, a HAProxy socket reached through the host's SSH connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.cli.project import Project
from shipyard.config import check_text
from shipyard.config.deploy import NginxRouter
from shipyard.routers.haproxy import HaproxyRouter as HaproxyDriver
from shipyard.routers.haproxy import SshUnixChannel
from shipyard.routers.nginx import LocalExecutor, SshExecutor
from shipyard.routers.nginx import NginxRouter as NginxDriver

HEAD = """\
project: demo
repos:
  api: {path: .}
environments:
  dev: {branch: dev}
hosts:
  lb-1: {address: 198.18.0.11, user: deploy}
services:
  api:
    repo: api
    run: serve --port {port}
"""                          # 11 lines: the deploy line is line 12


def problems(snippet: str) -> list[str]:
    _, found = check_text(HEAD + f"    deploy: {{router: {snippet}}}\n", "shipyard.yaml", {})
    return [str(p) for p in found]


def test_a_full_nginx_router_loads_with_its_defaults() -> None:
    config, found = check_text(HEAD + "    deploy: {router: {type: nginx, upstream: api, file: /etc/nginx/conf.d/"
                               "shipyard-api.conf, listen: '10.0.0.5:80'}}\n", "shipyard.yaml", {})
    assert found == [] and config is not None
    router = config.services["api"].deploy.router
    assert isinstance(router, NginxRouter)
    assert (router.upstream, router.conf, router.status, router.binary, router.timeout, router.host) == (
        "api", "/etc/nginx/nginx.conf", "127.0.0.1:8099", "nginx", 10.0, None)
    assert config.listen_for("api", "dev") == "10.0.0.5:80"


@pytest.mark.parametrize(("snippet", "where"), [
    ("{type: nginx, file: f}", "upstream"),
    ("{type: nginx, upstream: api}", "file"),
    ("{type: nginx, upstream: 'api { }', file: f}", "upstream"),
    ("{type: nginx, upstream: api, file: f, status: 'localhost'}", "status"),
    ("{type: nginx, upstream: api, file: f, status: '127.0.0.1:8099; include x'}", "status"),
    ("{type: nginx, upstream: api, file: f, timeout: 0s}", "timeout"),
    ("{type: nginx, upstream: api, file: f, reload: hup}", "reload"),
    ("{type: nginx, upstream: api, file: f, host: lb-2}", "host"),
    ("{type: nginx, upstream: api, file: f, host: 'a b'}", "host"),
    ("{type: haproxy, socket: /run/haproxy.sock, backend: api, host: lb-9}", "host"),
])
def test_bad_nginx_routers_and_router_hosts_are_one_line_errors(snippet: str, where: str) -> None:
    found = problems(snippet)
    assert found, snippet
    for line in found:     # an invalid host name is also not a known host: two lines, both about `host`
        assert line.startswith(f"shipyard.yaml:12: services.api.deploy.router.{where}: "), found
        assert "\n" not in line


def test_an_unknown_router_host_names_the_known_ones() -> None:
    found = problems("{type: nginx, upstream: api, file: f, host: lb-2}")
    assert "'lb-2'" in found[0] and "lb-1" in found[0], found


def project(tmp_path: Path, router: str) -> Project:
    cfg = tmp_path / "shipyard.yaml"
    cfg.write_text(HEAD + f"    deploy: {{router: {router}}}\n")
    return Project.load(cfg)


def test_the_cli_builds_a_local_nginx_with_paths_from_the_config_dir(tmp_path: Path) -> None:
    p = project(tmp_path, "{type: nginx, upstream: api, file: run/up.conf, conf: /srv/ngx/nginx.conf, "
                          "binary: /usr/sbin/nginx, timeout: 3s}")
    router = p.router(p.settings("api", "dev"), agent=None)  # type: ignore[arg-type]
    assert isinstance(router, NginxDriver) and isinstance(router.ex, LocalExecutor)
    assert (router.file, router.conf, router.binary, router.timeout) == (
        str(tmp_path / "run" / "up.conf"), "/srv/ngx/nginx.conf", "/usr/sbin/nginx", 3.0)


class Agent:
    """What the SSH pool's lifetime is tied to: closed with the invocation's agent client."""

    def __init__(self) -> None:
        self.closing: list[object] = []


def test_the_cli_builds_routers_on_a_host_over_ssh(tmp_path: Path) -> None:
    p = project(tmp_path, "{type: nginx, upstream: api, file: etc/up.conf, host: lb-1}")
    agent = Agent()
    router = p.router(p.settings("api", "dev"), agent=agent)  # type: ignore[arg-type]
    assert isinstance(router, NginxDriver) and isinstance(router.ex, SshExecutor)
    assert router.ex.host == "lb-1" and router.file == "etc/up.conf"     # a path on that host, not ours
    assert "lb-1" in router.name

    p = project(tmp_path, "{type: haproxy, socket: /run/haproxy/admin.sock, backend: api, host: lb-1, timeout: 2s}")
    hx = p.router(p.settings("api", "dev"), agent=agent)  # type: ignore[arg-type]
    assert isinstance(hx, HaproxyDriver) and isinstance(hx.channel, SshUnixChannel)
    assert (hx.channel.host, hx.channel.path, hx.channel.timeout) == ("lb-1", "/run/haproxy/admin.sock", 2.0)
    assert len(agent.closing) == 2      # each project's pool is closed with the invocation (nothing connected yet)
