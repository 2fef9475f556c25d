"""`hosts:` and `ssh:` in shipyard.yaml: what loads, and the one-line errors for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import load_config
from shipyard.errors import ConfigError, UnknownHostError

BASE = "project: x\nenvironments: {prod: {branch: main}}\n"


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "shipyard.yaml"
    path.write_text(BASE + text)
    return load_config(path, environ={})


def test_the_issue_example_loads(tmp_path: Path) -> None:
    config = load(tmp_path, "hosts:\n  web-1: {address: 198.18.0.11, user: deploy, labels: {zone: a}}\n"
                            "  web-2: {address: 'fe80::1', user: deploy, port: 2222}\n"
                            'ssh: {key: "${secret:DEPLOY_SSH_KEY}", known_hosts: .shipyard/known_hosts, '
                            "connect_timeout: 5s, parallel: 2}\n")
    web1 = config.host("web-1")  # type: ignore[attr-defined]
    assert (web1.address, web1.user, web1.port, web1.labels, web1.release_dir) == (
        "198.18.0.11", "deploy", 22, {"zone": "a"}, "/srv/shipyard")
    ssh = config.ssh  # type: ignore[attr-defined]
    assert (ssh.key, ssh.connect_timeout, ssh.parallel, ssh.keepalive) == ("${secret:DEPLOY_SSH_KEY}", 5.0, 2, 15.0)
    with pytest.raises(UnknownHostError, match=r"unknown host 'web-3' \(known: web-1, web-2\)"):
        config.host("web-3")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "message"), [
    ("hosts: {'bad name': {address: 10.0.0.1, user: u}}", "invalid name 'bad name'"),
    ("hosts: {w: {address: '10.0.0.1:22', user: u}}", "hosts.w.address: .*invalid address"),
    ("hosts: {w: {address: 'a b', user: u}}", "invalid address 'a b'"),
    ("hosts: {w: {address: 999.1.1.1, user: u}}", "invalid address"),
    ("hosts: {w: {address: h, user: 'root; id'}}", "invalid user"),
    ("hosts: {w: {address: h, user: u, port: 0}}", "hosts.w.port"),
    ("hosts: {w: {address: h, user: u, port: 70000}}", "hosts.w.port"),
    ("hosts: {w: {address: h, user: u, release_dir: srv}}", "absolute path"),
    ("hosts: {w: {address: h, user: u, labels: {zone: 'a b'}}}", "invalid label value"),
    ("hosts: {w: {address: h}}", "hosts.w.user"),
    ("ssh: {connect_timeout: 0s}", "ssh.connect_timeout"),
    ("ssh: {connect_timeout: 5 mins}", "invalid duration"),
    ("ssh: {parallel: 0}", "ssh.parallel"),
    ("ssh: {key: k, key_file: f}", "not both"),
    ("ssh: {known_host: x}", "unknown key"),
])
def test_bad_fleet_config_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, text + "\n")
    assert "\n" not in str(caught.value)
