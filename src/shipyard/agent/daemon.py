"""Agent lifecycle from the caller's side: start it when needed, stop it, ask whether it runs.

Synchronous on purpose: the CLI calls these before it has an event loop, and they mostly wait for
another process. Async code uses the `*_async` wrappers, which run them in a worker thread.

Who is "the agent" is decided by the flock on agent.pid (see pidfile.py), never by a pid or a socket
file alone: both can be left behind by an agent that was SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from shipyard.agent import pidfile, procs
from shipyard.agent.client import raise_for_response
from shipyard.agent.errors import AgentRequestError
from shipyard.agent.paths import AgentPaths, SocketName
from shipyard.errors import AgentError
from shipyard.secrets.scrub import PYTHON, scrubbed

_POLL = 0.05
_BASE_URL = "http://shipyard-agent"


def _request(paths: AgentPaths, method: str, path: str, *, timeout: float, json: Any = None) -> Any:
    """One admin API call; None when nothing answers on the socket."""
    if not paths.sock.exists():
        return None
    name = SocketName(paths.sock)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=name.name), base_url=_BASE_URL,
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


@contextlib.contextmanager
def _start_lock(paths: AgentPaths, deadline: float) -> Iterator[None]:
    """Serialise starters, so two CLIs racing into ensure_agent start exactly one agent."""
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise AgentError(f"timed out waiting for another process starting the agent "
                                     f"({paths.lock} is locked)") from None
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)


def _clean_stale(paths: AgentPaths) -> None:
    """Only called with no lock holder: these files belong to an agent that died without cleanup."""
    for path in (paths.sock, paths.pid):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()


def _spawn(paths: AgentPaths) -> subprocess.Popen[bytes]:
    """Start the agent detached: own session (no terminal signals), no stdin, output to agent.log."""
    with open(paths.log, "ab") as logf:
        return subprocess.Popen(
            [sys.executable, "-m", "shipyard.agent", "--state-dir", str(paths.state_dir)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
            close_fds=True, env=scrubbed(allow=PYTHON))


def _log_tail(paths: AgentPaths, lines: int = 5) -> str:
    try:
        text = paths.log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def ensure_agent(state_dir: Path, timeout: float = 10.0) -> None:
    """Make sure an agent serves `state_dir`, starting one if none does; raises AgentError on failure."""
    paths = AgentPaths(Path(state_dir).resolve())
    if _serving(paths):
        return
    try:
        paths.ensure_dirs()
        _ensure(paths, timeout)
    except OSError as exc:
        raise AgentError(f"cannot start the agent in {paths.state_dir}: {exc}") from exc


def _ensure(paths: AgentPaths, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with _start_lock(paths, deadline):
        proc: subprocess.Popen[bytes] | None = None
        while True:
            if _serving(paths):
                return
            if proc is not None and proc.poll() is not None:
                raise AgentError(f"the agent exited with code {proc.returncode} while starting; "
                                 f"{paths.log}: {_log_tail(paths)}")
            if proc is None and pidfile.holder(paths) is None:
                _clean_stale(paths)
                proc = _spawn(paths)
            if time.monotonic() >= deadline:
                holder = pidfile.holder(paths)
                raise AgentError(f"the agent (pid {holder or '?'}) did not answer at {paths.sock} within "
                                 f"{timeout:g}s; see {paths.log}")
            time.sleep(_POLL)


def stop_agent(state_dir: Path, stop_instances: bool = True, timeout: float = 30.0) -> bool:
    """Stop the agent and wait for its process to exit: True if one was stopped, False if none ran.

    An agent that holds the lock but does not answer is sent SIGTERM (which stops instances), but only
    when the caller asked to stop instances anyway.
    """
    paths = AgentPaths(Path(state_dir).resolve())
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
    deadline = time.monotonic() + timeout
    while pidfile.holder(paths) is not None or (pid and procs.is_running(pid)):
        if time.monotonic() >= deadline:
            raise AgentError(f"the agent (pid {pid}) did not exit within {timeout:g}s")
        time.sleep(_POLL)
    return True


async def ensure_agent_async(state_dir: Path, timeout: float = 10.0) -> None:
    await asyncio.to_thread(ensure_agent, state_dir, timeout)


async def stop_agent_async(state_dir: Path, stop_instances: bool = True, timeout: float = 30.0) -> bool:
    return await asyncio.to_thread(stop_agent, state_dir, stop_instances, timeout)


async def agent_status_async(state_dir: Path, timeout: float = 5.0) -> dict[str, Any] | None:
    return await asyncio.to_thread(agent_status, state_dir, timeout)
