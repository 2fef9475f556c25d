"""Agent lifecycle from the caller's side: start it when needed, stop it, ask whether it runs.

Synchronous on purpose: the CLI calls these before it has an event loop, and they mostly wait for
another process. Async code uses the `*_async` wrappers, which run them in a worker thread.

The agent is started by the keeper (shipyard.proxy), never directly: the keeper also runs the routers
and holds their sockets, and starts the agent again when it dies. Who is "the agent" is decided by the
flock on agent.pid (see pidfile.py), never by a pid or a socket file alone: both can be left behind by
an agent that was SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx

from shipyard.adminapi import unix_transport_sync
from shipyard.agent import pidfile, procs
from shipyard.agent.client import raise_for_response
from shipyard.agent.errors import AgentRequestError
from shipyard.agent.paths import AgentPaths, SocketName
from shipyard.agent.state import LIVE, StateFile
from shipyard.errors import AgentError
from shipyard.proxy import ensure_keeper, keeper_pid, keeper_request, keeper_status, stop_keeper

_POLL = 0.05
_BASE_URL = "http://shipyard-agent"


def _request(paths: AgentPaths, method: str, path: str, *, timeout: float, json: Any = None) -> Any:
    """One admin API call; None when nothing answers on the socket."""
    if not paths.sock.exists():
        return None
    name = SocketName(paths.sock)
    try:
        with httpx.Client(transport=unix_transport_sync(name.name), base_url=_BASE_URL,
                          timeout=timeout) as http:
            resp = http.request(method, path, json=json)
    except (httpx.TransportError, OSError):
        return None
    finally:
        name.close()
    raise_for_response(resp)
    return resp.json()


def _serving(paths: AgentPaths, timeout: float = 2.0) -> bool:
    """An agent answers and is not on its way out (one that is shutting down cannot take new work)."""
    status = _request(paths, "GET", "/v1/status", timeout=timeout)
    return status is not None and not status.get("shutting_down")


def agent_status(state_dir: Path, timeout: float = 5.0) -> dict[str, Any] | None:
    """The agent's /v1/status, or None when no agent answers for this state dir."""
    result: dict[str, Any] | None = _request(AgentPaths(Path(state_dir)), "GET", "/v1/status",
                                             timeout=timeout)
    return result


def _log_tail(paths: AgentPaths, lines: int = 5) -> str:
    try:
        text = paths.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def ensure_agent(state_dir: Path, timeout: float = 10.0, config: Path | None = None,
                 router_workers: str | None = None) -> None:
    """Make sure an agent serves `state_dir`, starting the keeper (which starts the agent and the routers)
    if none runs; raises AgentError on failure. `config` is the project whose interrupted deploys the
    keeper recovers after an agent crash; `router_workers` its `agent.router_workers`."""
    paths = AgentPaths(Path(state_dir).resolve())
    if _serving(paths) and keeper_pid(paths.state_dir) is not None:
        return
    try:
        paths.ensure_dirs()
        deadline = time.monotonic() + timeout
        ensure_keeper(paths.state_dir, timeout, config, router_workers)
        keeper_request(paths.state_dir, "start-agent")
        while not _serving(paths):
            if time.monotonic() >= deadline:
                holder = pidfile.holder(paths)
                raise AgentError(f"the agent (pid {holder or '?'}) did not answer at {paths.sock} within "
                                 f"{timeout:g}s; {paths.log}: {_log_tail(paths)}")
            time.sleep(_POLL)
    except OSError as exc:
        raise AgentError(f"cannot start the agent in {paths.state_dir}: {exc}") from exc


def _clean_stale(paths: AgentPaths) -> None:
    """Only called with no lock holder: these files belong to an agent that died without cleanup."""
    for path in (paths.sock, paths.pid):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()


def _live_instances(paths: AgentPaths) -> bool:
    return any(r.state in LIVE for r in StateFile(paths.state).load().instances)


def stop_agent(state_dir: Path, stop_instances: bool = True, timeout: float = 30.0) -> bool:
    """Stop the agent and wait for its process to exit: True if one was stopped, False if none ran.

    With `stop_instances` this is the full stop of the host: every instance, the agent, the routers
    (traffic stops, the routing table is forgotten) and the keeper. Without it only the agent exits:
    instances and routers keep serving, and the keeper does not start the agent again until asked.
    """
    paths = AgentPaths(Path(state_dir).resolve())
    if stop_instances and keeper_pid(paths.state_dir) is not None:
        if pidfile.holder(paths) is None and _live_instances(paths):
            # Instances left running by an agent stopped with --leave-running: one must adopt them
            # before they can be stopped.
            with contextlib.suppress(AgentError):
                ensure_agent(paths.state_dir, timeout=min(timeout, 15.0))
        stopped = stop_keeper(paths.state_dir, timeout)
        _wait_gone(paths, None, timeout)
        return stopped
    pid = pidfile.holder(paths)
    if pid is None:
        _clean_stale(paths)
        return False
    try:
        answered = _request(paths, "POST", "/v1/shutdown", timeout=min(5.0, timeout),
                            json={"stop_instances": stop_instances}) is not None
    except AgentRequestError as exc:
        if exc.status != 503:          # 503: already shutting down, so just wait for it
            raise
        answered = True
    if not answered:
        if not stop_instances or not pid:
            raise AgentError(f"the agent (pid {pid or '?'}) does not answer at {paths.sock}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    _wait_gone(paths, pid, timeout)
    return True


def _wait_gone(paths: AgentPaths, pid: int | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pidfile.holder(paths) is not None or (pid and procs.is_running(pid)):
        if time.monotonic() >= deadline:
            raise AgentError(f"the agent (pid {pid or pidfile.holder(paths)}) did not exit within {timeout:g}s")
        time.sleep(_POLL)


def restart_agent(state_dir: Path, timeout: float = 120.0, router_workers: str | None = None) -> dict[str, Any]:
    """`shipyard agent restart`: a new router generation takes over the sockets (zero failed requests),
    the agent is restarted leaving its instances running, then the keeper re-executes itself (same pid)
    and adopts them; all three then run the installed code. The new generation runs `router_workers`
    processes (when given)."""
    paths = AgentPaths(Path(state_dir).resolve())
    before = ensure_keeper(paths.state_dir)
    fields = {"router_workers": router_workers} if router_workers is not None else {}
    answer = keeper_request(paths.state_dir, "restart", timeout=timeout, keeper=True, **fields) or {}
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(AgentError):
            now = keeper_status(paths.state_dir)
            if now and now["started_at"] > before["started_at"] and _serving(paths):
                return {**answer, "keeper_pid": now["pid"]}
        if time.monotonic() >= deadline:
            raise AgentError(f"the keeper and agent did not come back within {timeout:g}s; see {paths.log}")
        time.sleep(_POLL)


async def ensure_agent_async(state_dir: Path, timeout: float = 10.0) -> None:
    await asyncio.to_thread(ensure_agent, state_dir, timeout)


async def stop_agent_async(state_dir: Path, stop_instances: bool = True, timeout: float = 30.0) -> bool:
    return await asyncio.to_thread(stop_agent, state_dir, stop_instances, timeout)


async def agent_status_async(state_dir: Path, timeout: float = 5.0) -> dict[str, Any] | None:
    return await asyncio.to_thread(agent_status, state_dir, timeout)
