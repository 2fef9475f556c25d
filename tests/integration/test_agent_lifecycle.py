"""Agent lifecycle with real processes (keeper, routers, agent): start once, status, stop, shutdown
modes, signals, and the agent coming back by itself."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shipyard.agent import procs
from shipyard.agent.client import AgentClient
from shipyard.agent.daemon import agent_status, ensure_agent, restart_agent, stop_agent
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
    # No keeper: nothing will bring an agent back, so this fails at once, with advice that is safe
    # (`agent start` recovers interrupted deploys first: it never revives a half-moved split).
    assert str(err.value) == (f"agent not running at {state_dir / 'agent.sock'}: "
                              "`shipyard agent start` starts it and recovers interrupted deploys")
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

    for sock in (harness.paths.sock, harness.state_dir / "router.sock", harness.state_dir / "keeper.sock"):
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600, sock      # admin sockets: private, never TCP
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


def test_a_killed_agent_comes_back_by_itself(harness: Harness) -> None:
    first = harness.ensure()
    keeper = harness.keeper()["pid"]
    os.kill(first, signal.SIGKILL)
    second = harness.new_agent(first)
    assert second != first and harness.keeper()["pid"] == keeper
    status = agent_status(harness.state_dir)
    assert status is not None and status["pid"] == second
    assert harness.keeper()["agent"]["restarts"] == 1
    assert f"agent (pid {first}) died" in (harness.state_dir / "keeper.log").read_text()


def test_stale_files_of_a_killed_agent_are_cleaned_up(harness: Harness) -> None:
    """An agent stopped on request is not restarted; a later one started by hand cleans up after a
    SIGKILLed one (its socket and pid files are left behind)."""
    first = harness.ensure()
    stop_agent(harness.state_dir, stop_instances=False, timeout=DEADLINE)
    assert harness.keeper()["agent"]["state"] == "stopped"
    standalone = subprocess.Popen([sys.executable, "-m", "shipyard.agent", "--state-dir", str(harness.state_dir)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: agent_status(harness.state_dir) is not None, "the hand-started agent")
        standalone.send_signal(signal.SIGKILL)
        standalone.wait(DEADLINE)
    finally:
        standalone.kill()
    assert harness.paths.sock.exists() and harness.paths.pid.exists()   # left behind
    assert agent_status(harness.state_dir) is None
    second = harness.ensure()
    assert second not in (first, standalone.pid)
    assert agent_status(harness.state_dir) is not None


async def test_stop_agent_stops_instances(harness: Harness) -> None:
    """The full stop: instances, agent, routers (the port closes, the table is forgotten), keeper."""
    pid = harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
        listen = (await client.router.ensure_router("api", "dev", "127.0.0.1:0"))["listen"]
    host = harness.host_pids()
    assert len(host) >= 3, host                 # keeper, agent, router (and its standby)
    assert stop_agent(harness.state_dir, timeout=DEADLINE) is True
    assert not procs.is_running(pid)
    assert not procs.is_running(rec["pid"])
    left = {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in host if procs.is_running(p)}
    assert not left
    assert not harness.paths.sock.exists() and not harness.paths.pid.exists()
    assert not (harness.state_dir / "routes.json").exists()
    assert agent_status(harness.state_dir) is None
    assert "got SIGTERM" in harness.log_text(rec)
    host_, port = listen.rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host_, int(port)), timeout=5):
        pass


async def test_sigterm_to_agent_stops_instances(harness: Harness) -> None:
    pid = harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not procs.is_running(pid), "the agent to exit on SIGTERM")
    assert not procs.is_running(rec["pid"])
    assert "got SIGTERM" in harness.log_text(rec)
    assert f"agent {pid} exited" in harness.paths.log.read_text()
    # An exit on request is not a crash: the keeper leaves it stopped until asked again.
    wait_until(lambda: harness.keeper()["agent"]["state"] == "stopped", "the keeper to see the clean exit")
    assert harness.agent_pid() is None


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
        listen = (await client.router.ensure_router("api", "dev", "127.0.0.1:0"))["listen"]
        await client.router.set_backends("api", "dev", [{"address": rec["address"], "weight": 1}])
        answer = await client.shutdown(stop_instances=False)
    assert answer == {"shutting_down": True, "stop_instances": False}
    wait_until(lambda: not procs.is_running(first), "the agent to exit")
    assert procs.is_running(rec["pid"])
    assert await http_get(rec["address"]) is not None
    assert await http_get(listen) is not None          # the routers do not depend on the agent

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


async def test_agent_restart_keeps_instances_and_routers(harness: Harness) -> None:
    """`shipyard agent restart`: a new router generation and a new agent, the apps adopted as they run."""
    first = harness.ensure()
    router = harness.active_router()
    async with harness.client() as client:
        rec = await harness.start_app(client)
        listen = (await client.router.ensure_router("api", "dev", "127.0.0.1:0"))["listen"]
        await client.router.set_backends("api", "dev", [{"address": rec["address"], "weight": 1}])
    keeper = harness.keeper()
    answer = restart_agent(harness.state_dir, timeout=DEADLINE * 2)
    assert answer["routers"]["old"] == router and answer["routers"]["new"] != router
    # The keeper re-executed itself: same pid (what systemd tracks), a new image that adopted the rest.
    again = harness.keeper()
    assert again["pid"] == keeper["pid"] == answer["keeper_pid"] and again["started_at"] > keeper["started_at"]
    assert again["listeners"] == [listen] and again["agent"]["pid"] is not None
    second = harness.new_agent(first)
    wait_until(lambda: not procs.is_running(router), "the old router generation to exit")
    assert harness.active_router() == answer["routers"]["new"]
    async with harness.client() as client:
        again = await client.get_instance(rec["id"])
        assert (again["pid"], again["state"], again["restarts"]) == (rec["pid"], "running", 0)
        assert (await client.status())["pid"] == second
    assert await http_get(listen) is not None
    assert harness.keeper()["agent"]["restarts"] == 0       # a restart on request is not a crash
    new_router = harness.active_router()                     # the sockets came back to the new image:
    harness.standby_ready()                                  # a router crash is still covered
    os.kill(new_router, signal.SIGKILL)
    wait_until(lambda: harness.active_router() != new_router, "the standby to take over")
    assert await http_get(listen) is not None


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


async def test_client_waits_for_an_agent_the_keeper_brings_back(harness: Harness) -> None:
    """A call that finds the agent dead waits for the keeper to restart it (bounded) instead of failing
    the deploy that made it; an agent stopped on purpose is reported at once."""
    first = harness.ensure()
    async with harness.client() as client:
        os.kill(first, signal.SIGKILL)
        st = await client.status()                     # no error: it waited for the new agent
        assert st["pid"] != first
        rec = await harness.start_app(client)          # and mutating calls work again
        assert rec["state"] == "running"
    stop_agent(harness.state_dir, stop_instances=False, timeout=DEADLINE)
    async with harness.client() as client:
        t0 = time.monotonic()
        with pytest.raises(AgentUnavailableError):
            await client.status()
        assert time.monotonic() - t0 < 5.0
