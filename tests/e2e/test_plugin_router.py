"""A router kind from a real third-party distribution (tests/plugin_dist.py, found through its entry point
on PYTHONPATH, as if pip-installed): `shipyard config validate` accepts `router: {type: recording}` and
points at a mistake in it by file:line, `config schema` lists it, and `shipyard deploy` drives it: the
router the deploy talked to ends holding exactly the new instances."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from plugin_dist import write_distribution

from .conftest import E2E, assert_ok, make_workspace

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def with_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    plugin = write_distribution(tmp_path_factory.mktemp("plugin") / "site")
    e2e = make_workspace(tmp_path_factory.mktemp("plug") / "ws")
    e2e.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(plugin), e2e.env.get("PYTHONPATH", "")) if p)
    try:
        e2e.edit_config(lambda text: text.replace(
            f'router: {{type: builtin, listen: "127.0.0.1:{e2e.api_port}"}}',
            'router: {type: recording, log: recorded.json}', 1))
        yield e2e
    finally:
        e2e.stop()


def test_config_validate_and_schema_know_the_plugin_kind(with_plugin: E2E) -> None:
    e2e = with_plugin
    assert_ok(e2e.cli("config", "validate"))
    schema = assert_ok(e2e.cli("config", "schema")).json()
    assert "recording" in schema["$defs"]["Deploy"]["properties"]["router"]["discriminator"]["mapping"]
    e2e.edit_config(lambda text: text.replace("log: recorded.json", "log: recorded.json, lgo: x", 1))
    res = e2e.cli("config", "validate")
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout, str(res)
    assert "shipyard.yaml:" in res.stdout + res.stderr and "router.lgo: unknown key" in res.stdout + res.stderr


def test_a_deploy_uses_the_plugin_router(with_plugin: E2E) -> None:
    e2e = with_plugin
    res = assert_ok(e2e.deploy("api", "--json"))
    assert res.json()["state"] == "succeeded", str(res)
    recorded = json.loads(Path(e2e.root, "recorded.json").read_text())
    calls = [c["call"] for c in recorded["calls"]]
    assert "ensure" in calls and "set_backends" in calls, calls
    running = {i["address"] for i in e2e.agent_instances()
               if i.get("revision") == res.json()["revision"] and i.get("state") == "running"}
    assert {b["address"] for b in recorded["backends"]} == running and running
    assert {(c["service"], c["env"]) for c in recorded["calls"]} == {("api", "stg")}
