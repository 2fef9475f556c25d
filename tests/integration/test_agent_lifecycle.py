"""Agent lifecycle with real agent processes: start once, status, stop, shutdown modes, signals."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from shipyard.agent import procs
from shipyard.agent.client import AgentClient
from shipyard.agent.daemon import agent_status, ensure_agent, stop_agent
from shipyard.errors import AgentError, AgentUnavailableError

try:
    from .test_agent_support import DEADLINE, Harness, harness_fixture, http_get, wait_until
except ImportError:
    from test_agent_support import DEADLINE, Harness, harness_fixture, http_get, wait_until

__all__ = ["harness_fixture"]


def _agent_processes(state_dir: Path) -> list[int]:
    """Processes running `-m shipyard.agent --state-dir <state_dir>`, found by their command line."""
    want = str(state_dir.resolve()).encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                cmd = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"shipyard.agent" in cmd and want in cmd and procs.is_running(int(name)):
                found.append(int(name))
    return found


async def test_no_agent_is_a_clear_error(tmp_path: Path) -> None:
    state_dir = tmp_path / "none"
    async with AgentClient(state_dir) as client:
        with pytest.raises(AgentUnavailableError) as err:
            await client.status()
    assert str(err.value) == (f"agent not running at {state_dir / 'agent.sock'}: "
                              "start it with `shipyard agent start`")
    assert agent_status(state_dir) is None
    assert stop_agent(state_dir) is False


def test_concurrent_ensure_agent_starts_one(harness: Harness) -> None:
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def racer() -> None:
        try:
            barrier.wait()
            ensure_agent(harness.state_dir, timeout=DEADLINE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=racer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert not errors
    pid = harness.ensure()                      # a fourth call finds the running one
    assert _agent_processes(harness.state_dir) == [pid]

    status = agent_status(harness.state_dir)
    assert status is not None
    assert status["pid"] == pid
    assert status["state_dir"] == str(harness.state_dir.resolve())
    assert status["instances"] == [] and status["routers"] == []
    assert {"version", "started_at"} <= status.keys()
    assert status["event_loop"] == "uvloop"

    sock = harness.paths.sock
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(harness.state_dir.stat().st_mode) == 0o700


def test_concurrent_ensure_agent_from_separate_processes_starts_one(harness: Harness) -> None:
    code = ("import sys; from pathlib import Path; from shipyard.agent.daemon import ensure_agent, agent_status;"
            " ensure_agent(Path(sys.argv[1]), timeout=30); print(agent_status(Path(sys.argv[1]))['pid'])")
    racers = [subprocess.Popen([sys.executable, "-c", code, str(harness.state_dir)], stdout=subprocess.PIPE,
                               text=True) for _ in range(3)]
    pids = {int(p.communicate(timeout=DEADLINE)[0]) for p in racers}
    assert all(p.returncode == 0 for p in racers)
    assert pids == {harness.ensure()}
    assert _agent_processes(harness.state_dir) == list(pids)


def test_second_agent_on_same_dir_refuses(harness: Harness) -> None:
    pid = harness.ensure()
    proc = subprocess.run([sys.executable, "-m", "shipyard.agent", "--state-dir", str(harness.state_dir)],
                          capture_output=True, text=True, timeout=DEADLINE)
    assert proc.returncode == 1
    assert f"another agent (pid {pid}) is already running" in proc.stderr
    assert harness.agent_pid() == pid


def test_stale_files_of_a_killed_agent_are_cleaned_up(harness: Harness) -> None:
    first = harness.ensure()
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: harness.agent_pid() is None, "the agent lock to be released")
    assert harness.paths.sock.exists() and harness.paths.pid.exists()   # left behind
    assert agent_status(harness.state_dir) is None
    second = harness.ensure()
    assert second != first
    assert agent_status(harness.state_dir) is not None


async def test_stop_agent_stops_instances(harness: Harness) -> None:
    pid = harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
    assert stop_agent(harness.state_dir, timeout=DEADLINE) is True
    assert not procs.is_running(pid)
    assert not procs.is_running(rec["pid"])
    assert not harness.paths.sock.exists() and not harness.paths.pid.exists()
    assert agent_status(harness.state_dir) is None
    assert "got SIGTERM" in harness.log_text(rec)


async def test_sigterm_to_agent_stops_instances(harness: Harness) -> None:
    pid = harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not procs.is_running(pid), "the agent to exit on SIGTERM")
    assert not procs.is_running(rec["pid"])
    assert "got SIGTERM" in harness.log_text(rec)
    assert f"agent {pid} exited" in harness.paths.log.read_text()


async def test_sigint_to_agent_exits_cleanly(harness: Harness) -> None:
    pid = harness.ensure()
    os.kill(pid, signal.SIGINT)
    wait_until(lambda: not procs.is_running(pid), "the agent to exit on SIGINT")
    assert not harness.paths.sock.exists()
    assert "Traceback" not in harness.paths.log.read_text()


async def test_shutdown_without_stopping_leaves_apps_for_the_next_agent(harness: Harness) -> None:
    first = harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
        answer = await client.shutdown(stop_instances=False)
    assert answer == {"shutting_down": True, "stop_instances": False}
    wait_until(lambda: not procs.is_running(first), "the agent to exit")
    assert procs.is_running(rec["pid"])
    assert await http_get(rec["address"]) is not None

    second = harness.ensure()
    assert second != first
    async with harness.client() as client:
        again = await client.get_instance(rec["id"])
        assert (again["pid"], again["state"], again["restarts"]) == (rec["pid"], "running", 0)
        await client.shutdown(stop_instances=True)
    wait_until(lambda: not procs.is_running(second), "the agent to exit")
    assert not procs.is_running(rec["pid"])


def test_one_client_serves_several_event_loops(harness: Harness) -> None:
    """The CLI may run asyncio.run() more than once with one client: no connection may outlive a loop."""
    harness.ensure()
    client = harness.client()
    first = asyncio.run(client.status())
    second = asyncio.run(client.status())
    assert first["pid"] == second["pid"]
    asyncio.run(client.aclose())


def test_stop_agent_when_agent_does_not_answer_raises(harness: Harness) -> None:
    pid = harness.ensure()
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(AgentError, match="does not answer"):
            stop_agent(harness.state_dir, stop_instances=False, timeout=1)
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_long_state_dir_path_works(harness: Harness) -> None:
    deep = harness.base / ("d" * 60) / ("e" * 60) / "state"
    assert len(str(deep / "agent.sock")) > 108
    harness.state_dir, harness.paths = deep, type(harness.paths)(deep)
    harness.ensure()
    async with harness.client() as client:
        assert (await client.status())["state_dir"] == str(deep)
        rec = await harness.start_app(client)
        assert rec["state"] == "running"
