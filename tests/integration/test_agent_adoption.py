"""The agent dies, the apps do not: re-adoption, restarts of what died meanwhile, persisted expiry,
and start_instance calls that a dying agent may or may not have carried out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from shipyard.agent import procs
from shipyard.agent.errors import AgentRequestError, ConflictError
from shipyard.proxy import keeper_pid

try:
    from .test_agent_support import Harness, await_until, harness_fixture, http_get, wait_until
except ImportError:
    from test_agent_support import Harness, await_until, harness_fixture, http_get, wait_until

__all__ = ["harness_fixture"]


def _kill_agent(harness: Harness, pid: int) -> None:
    """SIGKILL the agent while the keeper is frozen, so it stays dead until `_thaw`."""
    os.kill(harness.keeper()["pid"], signal.SIGSTOP)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not procs.is_running(pid) and harness.agent_pid() is None, "the agent to die")


def _thaw(harness: Harness, old: int) -> int:
    """Let the keeper run again; it brings the agent back by itself."""
    os.kill(keeper_pid(harness.state_dir) or 0, signal.SIGCONT)
    return harness.new_agent(old)


def _log_size(path: str) -> int:
    return Path(path).stat().st_size


async def test_apps_survive_agent_sigkill_and_are_adopted(harness: Harness) -> None:
    first = harness.ensure()
    async with harness.client() as client:
        a = await harness.start_app(client)
        b = await harness.start_app(client, revision="b" * 40)
    _kill_agent(harness, first)

    # Without an agent the apps still serve, and still write their own logs.
    size = _log_size(a["log_path"])
    assert await http_get(a["address"], "/while-agent-dead") is not None
    await await_until(lambda: _grew(a["log_path"], size), "the app's log to grow without the agent")

    second = _thaw(harness, first)
    assert second != first
    async with harness.client() as client:
        for old in (a, b):
            rec = await client.get_instance(old["id"])
            assert (rec["pid"], rec["state"], rec["restarts"]) == (old["pid"], "running", 0)

        # A crash of an adopted app (not the new agent's child) is still noticed and restarted.
        os.kill(a["pid"], signal.SIGKILL)
        again = await harness.wait_record(client, a["id"], lambda r: r["restarts"] == 1
                                          and r["state"] == "running", "the adopted app's restart")
        assert again["pid"] != a["pid"]
        assert "status unknown" in harness.log_text(a)
        await await_until(lambda: http_get(a["address"]), "the restarted app")

        # An adopted app is stopped through its process group like any other.
        result = await client.stop_instance(b["id"], timeout=20)
        assert (result["state"], result["killed"]) == ("stopped", False)
        assert not procs.is_running(b["pid"])
        assert "got SIGTERM" in harness.log_text(b)


async def _grew(path: str, size: int) -> bool:
    return _log_size(path) > size


async def test_app_that_died_while_agent_was_down_is_started_again(harness: Harness) -> None:
    first = harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
    _kill_agent(harness, first)
    os.kill(rec["pid"], signal.SIGKILL)
    wait_until(lambda: not procs.is_running(rec["pid"]), "the app to die")

    _thaw(harness, first)
    async with harness.client() as client:
        again = harness.track(await client.get_instance(rec["id"]))
        assert again["state"] == "running" and again["restarts"] == 1 and again["pid"] != rec["pid"]
        answer = await await_until(lambda: http_get(rec["address"]), "the app on its old address")
        assert answer["instance"] == rec["id"]


async def test_expiry_survives_agent_restart(harness: Harness) -> None:
    first = harness.ensure()
    async with harness.client() as client:
        later = await harness.start_app(client, wait_http=False)
        passed = await harness.start_app(client, wait_http=False)
        at = time.time() + 2.0
        await client.expire_instance(later["id"], at)
        await client.expire_instance(passed["id"], time.time() + 0.3)
        # Freeze the agent, so the short expiry passes while nothing watches it, then kill it.
        os.kill(first, signal.SIGSTOP)
    wait_until(lambda: time.time() > passed_at(harness, passed["id"]), "the short expiry to pass")
    _kill_agent(harness, first)
    assert procs.is_running(passed["pid"])

    _thaw(harness, first)
    async with harness.client() as client:
        await harness.wait_record(client, passed["id"], lambda r: r["state"] == "stopped",
                                  "the already-expired instance to stop on agent start")
        rec = await client.get_instance(later["id"])
        assert rec["expires_at"] == at
        ended = await harness.wait_record(client, later["id"], lambda r: r["state"] == "stopped",
                                          "the persisted expiry")
        assert ended["stopped_at"] >= at - 0.05
        assert not procs.is_running(later["pid"]) and not procs.is_running(passed["pid"])


def passed_at(harness: Harness, instance_id: str) -> float:
    state = json.loads(harness.paths.state.read_text())
    expires: float = next(i["expires_at"] for i in state["instances"] if i["id"] == instance_id)
    return expires


async def test_reused_pid_is_not_adopted(harness: Harness) -> None:
    """A recorded pid now owned by an unrelated process (other start time) is neither adopted nor killed."""
    first = harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client, wait_http=False)
        await client.stop_instance(rec["id"], timeout=20)
        await client.shutdown(stop_instances=False)
    wait_until(lambda: not procs.is_running(first), "the agent to exit")

    stranger = subprocess.Popen(["sleep", "300"])
    try:
        state = json.loads(harness.paths.state.read_text())
        inst = state["instances"][0]
        inst.update(state="running", pid=stranger.pid, pid_start=(procs.start_time(stranger.pid) or 0) - 1)
        harness.paths.state.write_text(json.dumps(state))

        harness.ensure()
        async with harness.client() as client:
            again = harness.track(await client.get_instance(rec["id"]))
            assert again["pid"] != stranger.pid and again["restarts"] == 1
            await await_until(lambda: http_get(rec["address"]), "the app started again")
            await client.stop_instance(rec["id"], timeout=20)
        assert stranger.poll() is None and procs.is_running(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()


async def test_start_instance_is_idempotent_under_its_id(harness: Harness) -> None:
    """A start retried after the agent died mid-call (same id) finds the instance, never starts two."""
    harness.ensure()
    async with harness.client() as client:
        first = await harness.start_app(client, instance_id="api-dev-retry-0001")
        again = await client.start_instance(service="api", env="dev", revision=first["revision"],
                                            argv=harness.argv(), cwd=str(harness.base), instance_id=first["id"])
        assert again["id"] == first["id"] and again["pid"] == first["pid"]
        assert [i["id"] for i in await client.list_instances()] == [first["id"]]
        with pytest.raises(ConflictError, match="already used"):
            await client.start_instance(service="api", env="dev", revision="b" * 40, argv=harness.argv(),
                                        cwd=str(harness.base), instance_id=first["id"])
        with pytest.raises(AgentRequestError, match="id: letters"):
            await client.start_instance(service="api", env="dev", revision="b" * 40, argv=harness.argv(),
                                        cwd=str(harness.base), instance_id="../etc/passwd")
    assert [p for p in harness.token_pids() if procs.read_stat(p) and procs.read_stat(p).pgrp == p] \
        == [first["pid"]]                                        # type: ignore[union-attr]


async def test_app_started_just_before_the_agent_died_is_adopted_not_doubled(harness: Harness) -> None:
    """The agent records an instance before spawning it, and its pid after. Killed in between, the next
    agent finds the running app by the instance id in its environment instead of starting a second."""
    first = harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
    _kill_agent(harness, first)
    state = json.loads(harness.paths.state.read_text())
    state["instances"][0].update(state="starting", pid=None, pid_start=None)     # as if killed mid-start
    harness.paths.state.write_text(json.dumps(state))
    _thaw(harness, first)
    async with harness.client() as client:
        again = await client.get_instance(rec["id"])
    assert (again["pid"], again["restarts"]) == (rec["pid"], 0)
    assert harness.token_pids() and all(procs.read_stat(p).pgrp == rec["pid"]    # type: ignore[union-attr]
                                        for p in harness.token_pids())
