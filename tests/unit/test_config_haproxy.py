"""`router: {type: haproxy, ...}`: a member of the router union on `type`, checked field by field with
one-line errors, and what the engine's settings and the CLI's router picker make of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.cli.project import Project
from shipyard.config import HaproxyRouter, check_text
from shipyard.routers.builtin import BuiltinRouter
from shipyard.routers.haproxy import HaproxyRouter as HaproxyDriver
from shipyard.routers.haproxy import UnixSocketChannel

HEAD = """\
project: demo
repos:
  api: {path: .}
environments:
  dev: {branch: dev}
  prod: {branch: main}
services:
  api:
    repo: api
    run: serve --port {port}
"""                          # 10 lines: the deploy line is line 11


def problems(snippet: str) -> list[str]:
    _, found = check_text(HEAD + snippet, "shipyard.yaml", {})
    return [str(p) for p in found]


def test_a_full_haproxy_router_loads() -> None:
    config, found = check_text(HEAD + "    deploy: {router: {type: haproxy, socket: /run/haproxy/admin.sock, "
                               "backend: api, server_prefix: app, listen: 127.0.0.1:8080, timeout: 2s}}\n",
                               "shipyard.yaml", {})
    assert found == [] and config is not None
    router = config.services["api"].deploy.router
    assert isinstance(router, HaproxyRouter)
    assert (router.socket, router.backend, router.server_prefix, router.timeout) == (
        "/run/haproxy/admin.sock", "api", "app", 2.0)
    assert config.listen_for("api", "dev") == "127.0.0.1:8080"


def test_listen_per_environment() -> None:
    config, found = check_text(HEAD + "    deploy: {router: {type: haproxy, socket: s, backend: api, "
                               "listen: {dev: '127.0.0.1:8081', prod: '127.0.0.1:8082'}}}\n", "shipyard.yaml", {})
    assert found == [] and config is not None
    assert config.listen_for("api", "prod") == "127.0.0.1:8082"


@pytest.mark.parametrize(("snippet", "expect"), [
    ("{type: haproxy}", ["shipyard.yaml:11: services.api.deploy.router.socket: is required",
                         "shipyard.yaml:11: services.api.deploy.router.backend: is required"]),
    ("{type: haproxy, socket: s, backend: 'api; shutdown sessions'}",
     ["shipyard.yaml:11: services.api.deploy.router.backend: invalid HAProxy name 'api; shutdown sessions': "
      "use 1-64 letters, digits, '-', '_', '.' or ':'"]),
    ("{type: haproxy, socket: s, backend: api, server_prefix: 'a b'}",
     ["shipyard.yaml:11: services.api.deploy.router.server_prefix: invalid HAProxy name 'a b': use 1-64 "
      "letters, digits, '-', '_', '.' or ':'"]),
    ("{type: haproxy, socket: '', backend: api}", None),
    ("{type: haproxy, socket: s, backend: api, listen: nowhere}", None),
    ("{type: haproxy, socket: s, backend: api, retries: 3}", None),
    ("{type: haproxy, socket: s, backend: api, timeout: 0s}", None),
])
def test_bad_haproxy_routers_are_one_line_errors(snippet: str, expect: list[str] | None) -> None:
    found = problems(f"    deploy: {{router: {snippet}}}\n")
    if expect is not None:
        assert found == expect
    else:
        assert len(found) == 1 and found[0].startswith("shipyard.yaml:11: services.api.deploy.router."), found
        assert "\n" not in found[0]


def test_the_cli_picks_the_router_the_config_names(tmp_path: Path) -> None:
    cfg = tmp_path / "shipyard.yaml"
    cfg.write_text(HEAD + "    deploy: {router: {type: haproxy, socket: run/admin.sock, backend: api, "
                          "listen: 127.0.0.1:8080}}\n")
    project = Project.load(cfg)
    router = project.router(project.settings("api", "dev"), agent=None)  # type: ignore[arg-type]
    assert isinstance(router, HaproxyDriver) and isinstance(router.channel, UnixSocketChannel)
    assert router.channel.path == str(tmp_path / "run" / "admin.sock") and router.listen == "127.0.0.1:8080"
    assert router.backend == "api" and router.prefix is None


def test_the_builtin_router_stays_the_default(tmp_path: Path) -> None:
    cfg = tmp_path / "shipyard.yaml"
    cfg.write_text(HEAD)
    project = Project.load(cfg)

    class Agent:
        router = object()

    assert isinstance(project.router(project.settings("api", "dev"), Agent()), BuiltinRouter)  # type: ignore[arg-type]
