"""The agent dies under a user's feet, through the real CLI: traffic keeps flowing, a deploy in progress
finishes, a run whose owner died with it is recovered by the keeper, and status tells the truth.

After each kill exactly one revision serves (the router's weights and the answers agree).
"""

from __future__ import annotations

import os
import signal
import sqlite3
from collections.abc import Callable

import pytest

from shipyard.agent import pidfile
from shipyard.agent.daemon import agent_status
from shipyard.agent.paths import AgentPaths
from shipyard.demo.load import LoadRunner
from shipyard.demo.workspace import commit_version

from .conftest import E2E, assert_ok, assert_one_error, get_version, wait_until

pytestmark = pytest.mark.timeout(600)


def _serving_revisions(e2e: E2E) -> set[str]:
    st = agent_status(e2e.agent_dir)
    assert st is not None
    router = next(r for r in st["routers"] if (r["service"], r["env"]) == ("api", "stg"))
    return {b["revision"] for b in router["backends"] if b["weight"] > 0}


def _steps_done(e2e: E2E, deployment: str | None = None) -> int:
    db = e2e.root / ".shipyard" / "state.db"
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        dep = deployment or con.execute("SELECT id FROM deployments ORDER BY created_at DESC LIMIT 1").fetchone()[0]
        return int(con.execute("SELECT count(*) FROM steps WHERE deployment_id = ? AND state = 'succeeded'",
                               (dep,)).fetchone()[0])
    finally:
        con.close()


def _kill_agent(e2e: E2E) -> int:
    pid = pidfile.holder(AgentPaths(e2e.agent_dir))
    assert pid, "no agent to kill"
    os.kill(pid, signal.SIGKILL)
    return pid


def _agent_back(e2e: E2E, old: int) -> None:
    def back() -> bool:
        st = agent_status(e2e.agent_dir, timeout=2.0)
        return st is not None and st["pid"] != old
    wait_until(back, 30, "the keeper to bring the agent back")


def test_deploy_in_progress_survives_agent_sigkill(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    v1 = assert_ok(e2e.deploy("api", "--json")).json()["revision"]
    v2 = commit_version(e2e.ws, "api", "2.0.0")
    with LoadRunner(f"http://127.0.0.1:{e2e.api_port}/version", 40) as load:
        deploy = e2e.background("deploy", "api", "--env", "stg", "--json")
        wait_until(lambda: _steps_done(e2e) >= 3, 60, "the deploy to be under way")
        killed = _kill_agent(e2e)             # the CLI waits for the keeper to bring it back
        res = deploy.finish()
        result = load.stop()
    assert_ok(res)
    assert res.json()["state"] == "succeeded" and res.json()["revision"] == v2, str(res)
    assert result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
    _agent_back(e2e, killed)
    assert _serving_revisions(e2e) == {v2} and v1 != v2
    assert get_version(e2e.api_port)["version"] == "2.0.0"


def test_run_that_died_with_the_agent_is_recovered_by_the_keeper(new_workspace: Callable[[], E2E]) -> None:
    """The CLI and the agent both die mid-deploy: nobody runs a command, yet the run is rolled back (the
    keeper runs `shipyard recover` after restarting the agent) and only v1 serves."""
    e2e = new_workspace()
    v1 = assert_ok(e2e.deploy("api", "--json")).json()["revision"]
    commit_version(e2e.ws, "api", "2.0.0")
    killed_cli = e2e.cli("deploy", "api", "--env", "stg", "--json", SHIPYARD_FAILPOINT="after-step:4")
    assert killed_cli.returncode == -signal.SIGKILL, str(killed_cli)
    assert e2e.deployments()[0]["state"] == "in_progress"
    killed = _kill_agent(e2e)
    wait_until(lambda: e2e.deployments()[0]["state"] == "rolled_back", 90,
               "the keeper's recovery to roll the dead run back")
    _agent_back(e2e, killed)
    assert _serving_revisions(e2e) == {v1}
    assert get_version(e2e.api_port)["version"] == "1.0.0"
    assert "died" in (e2e.deployments()[0]["reason"] or "")


def test_status_with_the_agent_down_says_so_and_exits_1(new_workspace: Callable[[], E2E]) -> None:
    e2e = new_workspace()
    v1 = assert_ok(e2e.deploy("api", "--json")).json()["revision"]
    assert "agent stopped; instances and routers keep serving" in \
        assert_ok(e2e.cli("agent", "stop", "--leave-running")).stdout
    assert get_version(e2e.api_port)["version"] == "1.0.0"       # traffic does not need the agent

    human = e2e.cli("status")
    line = assert_one_error(human, 1)
    assert "agent is not running" in line, str(human)
    assert f"serving {v1[:8]}" in human.stdout, str(human)     # what the router serves, not "serving -"
    down = e2e.cli("status", "--json")
    assert down.returncode == 1, str(down)
    row = next(r for r in down.json()["status"] if (r["service"], r["env"]) == ("api", "stg"))
    assert down.json()["agent"] is False and row["revision"] == v1
    assert e2e.cli("agent", "status").returncode == 1

    started = assert_ok(e2e.cli("agent", "start", "--json")).json()
    assert started["recovered"] == []
    assert assert_ok(e2e.cli("status", "--json")).json()["agent"] is True

    # `agent restart` (what an upgrade ends with) under load: a new router generation and a new agent,
    # not one failed request, the same revision serving.
    with LoadRunner(f"http://127.0.0.1:{e2e.api_port}/version", 40) as load:
        wait_until(lambda: load.snapshot().succeeded >= 20, 30, "traffic through the router")
        restarted = assert_ok(e2e.cli("agent", "restart", "--json")).json()
        seen = load.snapshot().total
        wait_until(lambda: load.snapshot().succeeded >= seen + 20, 30, "traffic after the restart")
        result = load.stop()
    assert result.failed == 0, f"{result.summary()}; {result.failures[:5]}"
    assert restarted["agent_pid"] != started["pid"] and restarted["routers"]["new"] != restarted["routers"]["old"]
    assert _serving_revisions(e2e) == {v1}


def test_agent_start_recovers_a_dead_run_before_returning(new_workspace: Callable[[], E2E]) -> None:
    """The advice of every "agent not running" message is `shipyard agent start`: it must never leave a
    half-moved split serving, so it recovers runs whose owner died before it returns."""
    e2e = new_workspace()
    v1 = assert_ok(e2e.deploy("api", "--json")).json()["revision"]
    commit_version(e2e.ws, "api", "2.0.0")
    killed_cli = e2e.cli("deploy", "api", "--env", "stg", "--json", SHIPYARD_FAILPOINT="after-step:5")
    assert killed_cli.returncode == -signal.SIGKILL, str(killed_cli)
    dead = e2e.deployments()[0]
    assert dead["state"] == "in_progress"
    started = assert_ok(e2e.cli("agent", "start", "--json")).json()
    assert [(r["id"], r["state"]) for r in started["recovered"]] == [(dead["id"], "rolled_back")]
    assert _serving_revisions(e2e) == {v1}
    assert get_version(e2e.api_port)["version"] == "1.0.0"
