"""Deploys do what the docs promise, through the real CLI against real processes: a frozen environment
refuses deploys until an override (recorded); an OS error is one line and leaves nothing in progress."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .conftest import E2E, assert_ok, assert_one_error, get_version

UNFINISHED = ("queued", "in_progress", "rolling_back")


def _events(e2e: E2E, dep_id: str) -> list[dict[str, Any]]:
    return assert_ok(e2e.cli("show", dep_id, "--json")).json()["events"]


def _frozen(text: str) -> str:
    old = "  stg:  {branch: stg, promote_from: dev, "
    assert old in text
    return text.replace(old, "  stg:  {branch: stg, frozen: true, promote_from: dev, ", 1)


def test_a_frozen_environment_refuses_deploys_until_an_override(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    e2e.edit_config(_frozen)
    line = assert_one_error(e2e.deploy("api"), 1)
    assert "environments.stg.frozen: true" in line and "--override-freeze" in line, line
    assert e2e.deployments() == [], "a refused deploy left a record"
    assert "--reason" in assert_one_error(e2e.deploy("api", "--override-freeze"), 2)
    assert "--override-freeze" in assert_one_error(e2e.deploy("api", "--reason", "why"), 2)

    res = assert_ok(e2e.deploy("api", "--override-freeze", "--reason", "outage fix, approved by lead", "--json"))
    dep_id = res.json()["id"]
    assert get_version(e2e.api_port)["version"] == "1.0.0"
    [over] = [ev for ev in _events(e2e, dep_id) if ev["kind"] == "deploy.freeze_overridden"]
    assert over["data"]["actor"] == "e2e" and over["data"]["reason"] == "outage fix, approved by lead"
    assert "frozen" in assert_one_error(e2e.deploy("api"), 1), "an override is for one request only"


def test_an_os_error_mid_deploy_is_one_line_and_fails_the_run(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    (e2e.root / ".shipyard" / "releases").write_text("a file where the releases directory goes\n")
    res = e2e.deploy("api", "--json")
    line = assert_one_error(res, 1)
    assert "Not a directory" in line or "File exists" in line, line
    assert res.json()["state"] == "failed", str(res)
    assert [d["state"] for d in e2e.deployments()] == ["failed"]
    assert not [d for d in e2e.deployments() if d["state"] in UNFINISHED]
    shown = assert_ok(e2e.cli("show", res.json()["id"], "--json")).json()
    assert [s["state"] for s in shown["steps"] if s["phase"] == "deploy"] == ["failed"]
    assert json.dumps(shown).count("Traceback") == 0
