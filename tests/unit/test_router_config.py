"""The built-in router's tunables: shipyard.yaml -> ServiceSettings.router_options -> proxy.RouterOptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import check_text
from shipyard.engine.settings import service_settings
from shipyard.proxy import RouterOptions, RouterServer

BASE = """\
project: p
repos:
  api: {url: git@example.com:org/api.git, path: api}
environments:
  stg: {branch: stg}
services:
  api:
    repo: api
    run: python -m http.server {port}
    deploy:
      router:
        type: builtin
        listen: 127.0.0.1:8200
%s
"""

ROUTER = """\
        timeouts: {connect: 2s, response: 90s, request: 5s, client: 30s, keepalive: 15s, pool_idle: 10s}
        retries: 1
        retry_on: [conn-failure]
        trusted_proxies: [10.0.0.0/8, 192.168.1.7]
"""


def settings_for(router_keys: str) -> dict[str, object]:
    config, problems = check_text(BASE % router_keys, "shipyard.yaml", {})
    assert problems == [] and config is not None
    return service_settings(config, Path("/tmp"), "api", "stg").router_options


def test_router_keys_reach_the_router_options() -> None:
    options = RouterOptions.from_mapping(settings_for(ROUTER))
    assert options == RouterOptions(
        connect_timeout=2.0, response_timeout=90.0, request_timeout=5.0, client_timeout=30.0,
        keepalive_timeout=15.0, pool_idle_timeout=10.0, retries=1, retry_on=("conn-failure",),
        trusted_proxies=("10.0.0.0/8", "192.168.1.7/32"))
    router = RouterServer.with_options("api/stg", "127.0.0.1:0", options)
    assert router.options == options and router.is_trusted("10.2.3.4") and not router.is_trusted("11.0.0.1")
    assert router.is_trusted("::ffff:192.168.1.7")  # an IPv4 peer on a dual-stack socket


def test_defaults_are_the_routers_defaults() -> None:
    assert RouterOptions.from_mapping(settings_for("")) == RouterOptions()


def test_empty_retry_on_means_no_retries() -> None:
    assert RouterOptions.from_mapping(settings_for("        retry_on: []\n")).retry_on == ()


@pytest.mark.parametrize(("keys", "where", "words"), [
    ("        timeouts: {request: 0}\n", "timeouts.request", "greater than 0"),
    ("        timeouts: {response: soon}\n", "timeouts.response", "invalid duration"),
    ("        timeouts: {idle: 5s}\n", "timeouts.idle", "did you mean 'pool_idle'"),
    ("        retries: -1\n", "retries", "greater than or equal to 0"),
    ("        retry_on: [junk-response]\n", "retry_on[0]", "conn-failure"),
    ("        trusted_proxies: [10.0.0.0/33]\n", "trusted_proxies", "IP address or CIDR"),
])
def test_bad_router_keys_are_config_errors(keys: str, where: str, words: str) -> None:
    _, problems = check_text(BASE % keys, "shipyard.yaml", {})
    (err,) = problems
    assert err.key == f"services.api.deploy.router.{where}" and words in err.message, err


def test_router_options_parse_strictly() -> None:
    assert RouterOptions.from_mapping({"max_attempts": 2}).retries == 1  # persisted before `retries`
    assert RouterOptions.from_mapping({"retry_on": ["none"]}).retry_on == ()
    for bad, words in [({"retries": 1.5}, "integer"), ({"retry_on": "conn-failure"}, "list"),
                       ({"retry_on": ["sometimes"]}, "unknown"), ({"trusted_proxies": ["x"]}, "CIDR"),
                       ({"client_timeout": 0}, "> 0"), ({"nope": 1}, "unknown router option")]:
        with pytest.raises(ValueError, match=words):
            RouterOptions.from_mapping(bad)
    options = RouterOptions(trusted_proxies=("10.0.0.0/8",))
    assert RouterOptions.from_mapping(options.as_dict()) == options  # what is persisted comes back whole
