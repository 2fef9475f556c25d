"""The deploy story through the real CLI: v1, a rolling v2 under load, status, rollback as a traffic flip,
a failing release that rolls itself back, history and hook output, the deploy queue, and the agent.

The story's stages share one workspace (a deploy takes seconds), but each test asks for the stages it
needs through `Story`, which runs a stage the first time and remembers its result: any single test runs
alone, and the whole module pays for each deploy once. The queue test mutates the config and gets a
workspace of its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from shipyard.agent.daemon import agent_status
from shipyard.demo.load import LoadRunner
from shipyard.demo.workspace import commit_version, origin_tip

from .conftest import E2E, Result, assert_ok, assert_one_error, get_version, instance_processes, wait_until

DEPLOY_ID = re.compile(r"deploy-\d{8}-\d{6}-[0-9a-f]{8}(?:-\d+)?")


def _api_row(status: Result) -> dict[str, Any]:
    rows = [r for r in status.json()["status"] if r["service"] == "api" and r["env"] == "stg"]
    assert len(rows) == 1, str(status)
    return rows[0]


def _ids(row: dict[str, Any]) -> set[str]:
    return {i["id"] for i in row["instances"]}


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _add_hooks(text: str, hooks: str) -> str:
    """Give the api service a `hooks:` line (right after its `repo:`)."""
    anchor = "  api:\n    repo: api\n"
    assert anchor in text
    return text.replace(anchor, f"{anchor}    hooks: {hooks}\n", 1)


class Story:
    """The shared workspace's history, built up on demand (each stage runs at most once)."""

    def __init__(self, e2e: E2E) -> None:
        self.e2e = e2e
        self.done: dict[str, Any] = {}

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self.done:
            self.done[name] = make()
        return self.done[name]

    def v1(self) -> Result:
        """api's first deployment: the stg tip, still v1 because every test that commits asks for v1 first."""
        return self._once("v1", lambda: self.e2e.deploy("api", "--json"))

    def v2(self) -> dict[str, Any]:
        def make() -> dict[str, Any]:
            assert_ok(self.v1())
            sha = commit_version(self.e2e.ws, "api", "2.0.0")
            load = LoadRunner(f"http://127.0.0.1:{self.e2e.api_port}/version", 50, timeout=5.0).start()
            try:
                res = self.e2e.deploy("api", "--json")
                time.sleep(0.5)  # a little steady load after the last switch, too
            finally:
                result = load.stop(timeout=30)
            return {"sha": sha, "deploy": res, "load": result}
        return self._once("v2", make)

    def status_after_v2(self) -> Result:
        def make() -> Result:
            self.v2()
            return self.e2e.cli("status", "--json")
        return self._once("status_after_v2", make)


@pytest.fixture(scope="module")
def story(module_workspace: E2E) -> Iterator[Story]:
    yield Story(module_workspace)


def test_deploy_v1_serves_version_1(story: Story) -> None:
    res = assert_ok(story.v1())
    out = res.json()
    assert out["state"] == "succeeded", str(res)
    assert out["revision"] == origin_tip(story.e2e.ws, "api", "stg")
    assert DEPLOY_ID.fullmatch(out["id"])
    body = get_version(story.e2e.api_port)
    assert body["version"] == "1.0.0"
    assert body["revision"] == out["revision"]


def test_rolling_v2_under_load_fails_no_request(story: Story) -> None:
    v2 = story.v2()
    res, load = v2["deploy"], v2["load"]
    assert_ok(res)
    assert res.json()["state"] == "succeeded", str(res)
    assert res.json()["revision"] == v2["sha"]
    assert load.total >= 50, load.summary()        # ~50 rps for the whole deploy
    assert load.failed == 0, f"{load.summary()}; first failures: {load.failures[:5]}"
    body = get_version(story.e2e.api_port)
    assert (body["version"], body["revision"]) == ("2.0.0", v2["sha"])


def test_status_shows_v2_serving_and_v1_warm(story: Story) -> None:
    v2_sha = story.v2()["sha"]
    v1_sha = story.v1().json()["revision"]
    status = assert_ok(story.status_after_v2())
    row = _api_row(status)
    assert row["agent"] is True
    assert row["revision"] == v2_sha
    assert row["lease"] is None and row["queue"] == []
    assert row["last_deployment"]["state"] == "succeeded"
    serving = [i for i in row["instances"] if i["revision"] == v2_sha]
    warm = [i for i in row["instances"] if i["revision"] == v1_sha]
    assert len(serving) == 3, str(status)
    assert sum(i["traffic_percent"] for i in serving) == pytest.approx(100, abs=0.5)
    assert all(i["health"] == "healthy" and i["state"] == "running" for i in serving), str(status)
    assert all(i["warm_until"] is None for i in serving)
    assert len(warm) == 3, str(status)
    assert all(i["traffic_percent"] == 0 for i in warm), str(status)
    assert all(i["warm_until"] and i["warm_until"] > time.time() for i in warm), str(status)
    assert len(row["instances"]) == 6


def test_rollback_is_a_traffic_flip(story: Story) -> None:
    e2e = story.e2e
    v2_sha, v2_id = story.v2()["sha"], story.v2()["deploy"].json()["id"]
    v1_sha = story.v1().json()["revision"]
    before = {i["id"]: i for i in _api_row(assert_ok(story.status_after_v2()))["instances"]}

    res = assert_ok(e2e.cli("rollback", "api", "--env", "stg", "--json"))
    out = res.json()
    assert out["state"] == "succeeded" and out["revision"] == v1_sha, str(res)
    assert res.seconds < 30, f"a traffic flip took {res.seconds:.1f}s"
    assert get_version(e2e.api_port)["version"] == "1.0.0"

    after = _api_row(assert_ok(e2e.cli("status", "--json", "--service", "api", "--env", "stg")))
    assert _ids(after) <= set(before), "the rollback started new instances instead of flipping traffic"
    routed = [i for i in after["instances"] if i["traffic_percent"] > 0]
    assert {i["id"] for i in routed} == {i for i, b in before.items() if b["revision"] == v1_sha}
    assert all(i["revision"] == v1_sha and i["warm_until"] is None for i in routed)
    assert sum(i["traffic_percent"] for i in routed) == pytest.approx(100, abs=0.5)
    assert after["revision"] == v1_sha

    hist = {d["id"]: d for d in assert_ok(e2e.cli("history", "--json")).json()["deployments"]}
    assert hist[v2_id]["state"] == "rolled_back", hist[v2_id]
    assert hist[v2_id]["revision"] == v2_sha
    assert hist[out["id"]]["kind"] == "rollback" and hist[out["id"]]["rollback_of"] == v2_id


def test_failing_release_rolls_back_by_itself(story: Story) -> None:
    e2e = story.e2e
    assert_ok(story.v1())
    serving_before = get_version(e2e.api_port)
    bad_sha = commit_version(e2e.ws, "api", "3.0.0", health_fail=True)

    res = e2e.deploy("api")
    line = assert_one_error(res, 1)
    both = res.stdout + res.stderr
    assert "rolled_back" in line, str(res)
    assert "unhealthy" in line and "500" in line, f"the health reason is missing:\n{res}"
    assert "rollback.completed" in res.stdout, str(res)
    match = DEPLOY_ID.search(line)
    assert match, str(res)
    dep_id = match.group(0)
    assert dep_id in both

    now = get_version(e2e.api_port)
    assert (now["version"], now["revision"]) == (serving_before["version"], serving_before["revision"])
    assert bad_sha not in instance_processes(e2e.root).values(), "an instance of the bad revision still runs"

    shown = assert_ok(e2e.cli("show", dep_id, "--json")).json()
    assert shown["deployment"]["state"] == "rolled_back"
    assert shown["deployment"]["revision"] == bad_sha
    assert "unhealthy" in shown["deployment"]["reason"]
    deploy_steps = [s for s in shown["steps"] if s["phase"] == "deploy"]
    failed = [s for s in deploy_steps if s["state"] == "failed"]
    assert [s["kind"] for s in failed] == ["wait_healthy"], deploy_steps
    assert "500" in (failed[0]["error"] or ""), failed[0]
    rollback_steps = [s for s in shown["steps"] if s["phase"] == "rollback"]
    assert rollback_steps and all(s["state"] == "succeeded" for s in rollback_steps), rollback_steps
    kinds = [ev["kind"] for ev in shown["events"]]
    for kind in ("deploy.started", "deploy.failed", "rollback.started", "rollback.completed"):
        assert kind in kinds, kinds
    assert kinds.index("deploy.failed") < kinds.index("rollback.completed")


def test_history_newest_first_and_show_prints_hook_output(story: Story) -> None:
    e2e = story.e2e
    assert_ok(story.v1())
    old = e2e.edit_config(lambda t: _add_hooks(t, '{before_traffic: "echo hello-from-hook $SHIPYARD_REVISION"}'))
    try:
        sha = commit_version(e2e.ws, "api", "4.0.0")
        res = assert_ok(e2e.deploy("api", "--json"))
        dep_id = res.json()["id"]
        assert res.json()["state"] == "succeeded", str(res)
    finally:
        e2e.ws.config_path.write_text(old, encoding="utf-8")

    shown = assert_ok(e2e.cli("show", dep_id))
    assert "── output of hook before_traffic ──" in shown.stdout, str(shown)
    assert f"hello-from-hook {sha}" in shown.stdout, str(shown)

    hist = assert_ok(e2e.cli("history", "--json", "--service", "api", "--env", "stg")).json()["deployments"]
    assert len(hist) >= 2
    assert hist[0]["id"] == dep_id
    assert all((d["service"], d["env"]) == ("api", "stg") for d in hist)
    created = [_when(d["created_at"]) for d in hist]
    assert created == sorted(created, reverse=True), [d["id"] for d in hist]


def test_deploy_queue_waits_and_no_wait_refuses(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    # The first deploy's hook waits for a gate file the test opens once it has seen the others meet the
    # lease (a gate, not a sleep: on a loaded machine the others may take seconds just to start). The gate
    # comes from the CLI's environment (config interpolation); the others' is `/`, which exists: no wait.
    gate = e2e.root / "gate"
    e2e.edit_config(lambda t: _add_hooks(
        t, '{before_install: "until [ -e ${E2E_HOOK_GATE:-/} ]; do sleep 0.05; done"}'))

    first = e2e.background("deploy", "api", "--env", "stg", E2E_HOOK_GATE=str(gate))
    try:
        first.wait_for_line(r"step 1: hook before_install")
        second = e2e.background("deploy", "api", "--env", "stg")
        refused = e2e.background("deploy", "api", "--env", "stg", "--no-wait")
        try:
            waiting = second.wait_for_line(r"deploy\.waiting")
            status = _api_row(assert_ok(e2e.cli("status", "--json", "--service", "api", "--env", "stg")))
            res_refused = refused.finish()          # decided while the first still holds the lease
        finally:
            refused.kill()                          # (only if something above failed first)
            gate.touch()
            res2 = second.finish()
    finally:
        gate.touch()
        res1 = first.finish()
    assert_ok(res1)
    assert_ok(res2)
    hist = assert_ok(e2e.cli("history", "--json")).json()["deployments"]
    by_state: dict[str, list[dict[str, Any]]] = {}
    for d in hist:
        by_state.setdefault(d["state"], []).append(d)
    assert sorted(by_state) == ["cancelled", "succeeded"] and len(by_state["succeeded"]) == 2, hist
    second_row, first_row = by_state["succeeded"]           # newest first
    assert first_row["id"] in res1.stdout and second_row["id"] in res2.stdout

    # The second waited in the queue behind the first, and ran only after the first had finished.
    assert first_row["id"] in waiting, waiting
    assert status["lease"] and status["lease"]["deployment"] == first_row["id"], status
    assert [q["deployment"] for q in status["queue"]] == [second_row["id"]], status
    assert _when(first_row["finished_at"]) <= _when(second_row["started_at"]), "the two deploys overlapped"

    # --no-wait: refused at once with one line naming the holder; its record is closed, not left queued.
    line = assert_one_error(res_refused, 1)
    assert first_row["id"] in line and "--no-wait" in line, line
    assert res_refused.seconds < res1.seconds
    assert len(by_state["cancelled"]) == 1 and by_state["cancelled"][0]["finished_at"], hist


def test_agent_stop_status_and_restart(story: Story) -> None:
    e2e = story.e2e
    assert_ok(story.v1())
    st = assert_ok(e2e.cli("agent", "status", "--json")).json()
    assert st["running"] is True and st["pid"] > 0
    assert any(i["service"] == "api" and i["env"] == "stg" for i in st["instances"]), st
    agent_pid = st["pid"]
    assert instance_processes(e2e.root), "the leak check cannot see the workspace's instances"

    res = assert_ok(e2e.cli("agent", "stop"))
    assert "agent stopped" in res.stdout
    assert agent_status(e2e.agent_dir) is None
    wait_until(lambda: not instance_processes(e2e.root), 15, "the app instances to stop")

    # With the agent down, status still shows the records, says so in one error line, and exits 1.
    human = e2e.cli("status")
    line = assert_one_error(human, 1)
    assert "agent is not running" in line and "shipyard agent start" in line, str(human)
    assert "api/stg" in human.stdout, str(human)       # the last deployment is still shown
    down = e2e.cli("status", "--json")
    assert down.returncode == 1 and down.json()["agent"] is False, str(down)

    sha = commit_version(e2e.ws, "api", "5.0.0")
    res = assert_ok(e2e.deploy("api", "--json"))
    assert res.json()["state"] == "succeeded" and res.json()["revision"] == sha, str(res)
    st = agent_status(e2e.agent_dir)
    assert st is not None and st["pid"] != agent_pid
    assert get_version(e2e.api_port)["version"] == "5.0.0"
