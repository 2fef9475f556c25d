"""Pipeline gates through the real CLI: command stages and the vulnerability scan run before any instance
starts, so a failing one leaves the service exactly as it was (same instances, same revision serving).

The scan runs the real `npm audit` on a lockfile committed to the demo api repo, its advisories served by
tests/scan_registry.py on loopback (the service's env points npm there, as a team points it at a mirror).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scan_registry import ADVISORIES, VERSIONS, npm_registry
from shipyard.demo.workspace import commit_version
from shipyard.secrets.sealing import encode_key, new_key
from shipyard.testing.cli import run_cli as run_with_input
from shipyard.testing.wait import wait_until

from .conftest import E2E, assert_ok, get_version

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scan"
SECRET = ("STAGE_TOKEN", "stage-token-Zx8Cv6Bn4Mq2")
TEST_STAGE = (
    'echo "testing $SHIPYARD_SERVICE with token $STAGE_TOKEN"; '
    'if [ -e FAIL_TESTS ]; then echo "2 tests failed: test_login test_logout"; exit 3; fi; echo "all passed"')


def _pipeline(e2e: E2E, block: str) -> None:
    """Put `block` (YAML lines at service level) into the api service."""
    e2e.edit_config(lambda text: text.replace("  api:\n    repo: api\n", "  api:\n    repo: api\n" + block, 1))


def _running(e2e: E2E) -> set[str]:
    return {i["id"] for i in e2e.agent_instances() if i["service"] == "api" and i["state"] == "running"}


def _commit(e2e: E2E, version: str, files: dict[str, str | None]) -> str:
    dev = e2e.ws.dev_clones["api"]
    for name, text in files.items():
        if text is None:
            (dev / name).unlink(missing_ok=True)
        else:
            (dev / name).write_text(text, encoding="utf-8")
    return commit_version(e2e.ws, "api", version)


def _show(e2e: E2E, dep_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(assert_ok(e2e.cli("show", dep_id, "--json")).stdout)
    return data


@pytest.fixture
def staged(new_workspace: Any) -> Iterator[E2E]:
    e2e: E2E = new_workspace()
    e2e.env["SHIPYARD_MASTER_KEY"] = encode_key(new_key())
    _pipeline(e2e, f"    env: {{{SECRET[0]}: \"${{secret:{SECRET[0]}}}\"}}\n"
                   "    pipeline: [test, build]\n"
                   f"    stages: {{test: {{run: {json.dumps(TEST_STAGE)}, timeout: 30s}}}}\n")
    assert_ok(run_with_input(e2e.root, "secrets", "set", SECRET[0], "--env", "stg", env=e2e.env, input=SECRET[1]))
    yield e2e


def test_a_failing_test_stage_stops_the_deploy_before_any_instance_starts(staged: E2E) -> None:
    e2e = staged
    assert_ok(e2e.deploy("api"))
    first = e2e.deployments()[0]
    before, served = _running(e2e), get_version(e2e.api_port)["version"]
    assert len(before) == 3
    shown = _show(e2e, first["id"])
    stage = next(s for s in shown["steps"] if s["kind"] == "stage")
    assert stage["state"] == "succeeded" and "all passed" in stage["output"]
    assert SECRET[1] not in stage["output"] and "testing api with token" in stage["output"]   # redacted
    assert stage["idx"] == 0 and stage["started_at"] and stage["ended_at"]

    _commit(e2e, "2", {"FAIL_TESTS": "fail\n"})
    res = e2e.deploy("api")
    assert res.returncode == 1, str(res)
    dep = e2e.deployments()[0]
    assert dep["state"] == "failed" and "stage test exited 3" in dep["reason"], dep
    assert _running(e2e) == before                      # nothing started, nothing stopped
    assert get_version(e2e.api_port)["version"] == served
    shown = _show(e2e, dep["id"])
    assert [s["kind"] for s in shown["steps"]] == ["stage"]     # the build never ran
    text = assert_ok(e2e.cli("show", dep["id"])).stdout
    assert "2 tests failed: test_login test_logout" in text and SECRET[1] not in text
    assert not any(ev["kind"] == "instance.started" for ev in shown["events"])
    assert not (e2e.root / ".shipyard" / "releases" / ".pipeline" / "api.stg" / dep["id"]).exists()

    report = json.loads(assert_ok(e2e.cli("report", "--json")).stdout)
    pipeline = report["pipeline"]
    assert pipeline["deployments"] >= 1 and pipeline["p50_seconds"] is not None
    assert pipeline["p95_seconds"] >= pipeline["p50_seconds"]


def test_a_stage_past_its_timeout_has_its_process_group_killed(new_workspace: Any, tmp_path: Path) -> None:
    e2e: E2E = new_workspace()
    pidfile = tmp_path / "grandchild.pid"
    stage = f"sleep 120 & echo $! > {pidfile}; echo waiting; wait"
    _pipeline(e2e, f"    pipeline: [build, slow]\n    stages: {{slow: {{run: {json.dumps(stage)}, timeout: 1s}}}}\n")
    res = e2e.deploy("api")
    assert res.returncode == 1, str(res)
    dep = e2e.deployments()[0]
    assert "stage slow timed out after 1s" in dep["reason"], dep
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] == "Z"     # a zombie not yet reaped is dead too
    wait_until(gone, 10, "the stage's background child to be killed")
    assert _running(e2e) == set()
    step = next(s for s in _show(e2e, dep["id"])["steps"] if s["kind"] == "stage")
    assert "killed after 1s timeout" in step["output"] and step["detail"]["timed_out"] is True


@pytest.fixture
def scanned(new_workspace: Any, tmp_path: Path) -> Iterator[tuple[E2E, str]]:
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    e2e: E2E = new_workspace()
    with npm_registry(ADVISORIES, VERSIONS) as url:
        _commit(e2e, "1", {name: (FIXTURES / f"npm-{name}").read_text() for name in ("package.json",
                                                                                       "package-lock.json")})
        _pipeline(e2e, f"    env: {{npm_config_registry: {json.dumps(url)}, npm_config_cache: "
                       f"{json.dumps(str(tmp_path / 'npm-cache'))}, npm_config_update_notifier: 'false'}}\n"
                       "    pipeline: [build, scan]\n"
                       "    scan: {tool: npm, fail_on: [critical, high]}\n")
        yield e2e, url


def _set_ignores(e2e: E2E, until: dt.date) -> None:
    ignores = ", ".join(f"{{id: {i}, until: {until.isoformat()}, reason: reviewed}}"
                        for i in ("GHSA-xvch-5gv4-984h", "GHSA-p6mc-m468-83gm", "GHSA-35jh-r3h4-6jhm"))
    line = f"    scan: {{tool: npm, fail_on: [critical, high], ignore: [{ignores}]}}\n"
    e2e.edit_config(lambda text: re.sub(r"    scan: \{.*\}\n", lambda _: line, text, count=1))


def test_scan_blocks_on_critical_passes_while_ignored_and_blocks_again_when_the_ignore_expires(
        scanned: tuple[E2E, str]) -> None:
    e2e, _ = scanned
    res = e2e.deploy("api")
    assert res.returncode == 1, str(res)
    dep = e2e.deployments()[0]
    assert dep["state"] == "failed" and "scan (npm): 3 blocking findings" in dep["reason"], dep
    assert "GHSA-xvch-5gv4-984h (critical) in minimist 1.2.0" in dep["reason"]
    assert _running(e2e) == set()
    text = assert_ok(e2e.cli("show", dep["id"])).stdout
    for shown in ("minimist", "1.2.0", "minimist@1.2.8", "critical", "GHSA-xvch-5gv4-984h", "lodash@4.17.21"):
        assert shown in text, text

    _set_ignores(e2e, dt.date.today() + dt.timedelta(days=30))
    assert_ok(e2e.deploy("api"))
    dep = e2e.deployments()[0]
    assert dep["state"] == "succeeded" and len(_running(e2e)) == 3
    scan = next(s for s in _show(e2e, dep["id"])["steps"] if s["kind"] == "scan")
    assert {f["verdict"] for f in scan["detail"]["findings"]} == {"ignored"}
    assert scan["detail"]["tool"] == "npm" and scan["state"] == "succeeded"

    before = _running(e2e)
    _set_ignores(e2e, dt.date.today() - dt.timedelta(days=1))
    res = e2e.deploy("api")
    assert res.returncode == 1, str(res)
    dep = e2e.deployments()[0]
    assert "expired ignores: GHSA-" in dep["reason"] and "3 blocking findings" in dep["reason"], dep
    assert _running(e2e) == before
    text = assert_ok(e2e.cli("show", dep["id"])).stdout
    assert "ignore expired" in text, text
