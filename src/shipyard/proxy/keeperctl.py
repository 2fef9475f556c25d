"""The keeper from the caller's side: start it when needed, ask it things, stop it. Synchronous (the
CLI calls these before it has an event loop); async code uses `asyncio.to_thread`.

Who is "the keeper" is decided by the flock on keeper.pid, never by a pid or socket file alone: both
can be left behind by a keeper that was SIGKILLed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard.errors import AgentError
from shipyard.ipc import connect_unix, pidfile_holder
from shipyard.secrets.scrub import PYTHON, scrubbed

from .paths import ProxyPaths

_POLL = 0.05


class KeeperError(AgentError):
    """The keeper answered with an error, or could not be started."""


def keeper_pid(state_dir: Path) -> int | None:
    """The live keeper's pid (0 while it starts), or None when no keeper runs for `state_dir`."""
    return pidfile_holder(ProxyPaths(Path(state_dir)).keeper_pid)


def request(state_dir: Path, op: str, *, timeout: float = 5.0, **fields: Any) -> dict[str, Any] | None:
    """One control request; None when no keeper answers. An error answer raises KeeperError."""
    paths = ProxyPaths(Path(state_dir))
    try:
        with connect_unix(paths.keeper_sock, timeout) as sock:
            sock.sendall(json.dumps({"op": op, **fields}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    if "error" in answer:
        raise KeeperError(f"keeper: {answer['error']}")
    return answer


def status(state_dir: Path, timeout: float = 2.0) -> dict[str, Any] | None:
    return request(state_dir, "status", timeout=timeout)


def agent_expected(state_dir: Path) -> bool:
    """Whether a keeper runs that will (re)start the agent: worth waiting for it instead of failing."""
    try:
        st = status(state_dir, timeout=1.0)
    except KeeperError:
        return False
    return bool(st and not st.get("stopping") and st["agent"]["state"] in ("running", "backoff"))


def keeper_argv(state_dir: Path, config: Path | None = None, router_workers: str | None = None) -> list[str]:
    """How the keeper of `state_dir` is started (by the CLI, or by a systemd unit)."""
    argv = [sys.executable, "-m", "shipyard.proxy.keeperd", "--state-dir", str(state_dir)]
    if config is not None:
        argv += ["--project-config", str(config)]
    if router_workers is not None:
        argv += ["--router-workers", router_workers]
    return argv


@contextlib.contextmanager
def _start_lock(paths: ProxyPaths, deadline: float) -> Iterator[None]:
    """Serialise starters, so two CLIs racing here start exactly one keeper."""
    fd = os.open(paths.keeper_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise KeeperError(f"timed out waiting for another process starting the keeper "
                                      f"({paths.keeper_lock} is locked)") from None
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)


def spawn_keeper(paths: ProxyPaths, config: Path | None, router_workers: str | None = None) -> subprocess.Popen[bytes]:
    """Start the keeper detached: own session (no terminal signals), no stdin, output to keeper.log.
    The one place where a keeper process is started from a shipyard command, so the one place the
    command's environment is scrubbed for the keeper and everything it starts (router, agent, recovery)."""
    with open(paths.keeper_log, "ab") as logf:
        return subprocess.Popen(keeper_argv(paths.state_dir, config, router_workers), stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                env=scrubbed(allow=PYTHON))


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def ensure_keeper(state_dir: Path, timeout: float = 10.0, config: Path | None = None,
                  router_workers: str | None = None) -> dict[str, Any]:
    """Make sure a keeper runs for `state_dir` (starting one if none does); returns its status.
    `router_workers` applies to a keeper started here (`shipyard agent restart` changes a running one's)."""
    paths = ProxyPaths(Path(state_dir).resolve())
    st = status(paths.state_dir)
    if st is not None and not st.get("stopping"):
        return st
    paths.ensure_dir()
    deadline = time.monotonic() + timeout
    with _start_lock(paths, deadline):
        proc: subprocess.Popen[bytes] | None = None
        while True:
            st = status(paths.state_dir)
            if st is not None and not st.get("stopping"):
                return st
            if proc is not None and proc.poll() is not None:
                raise KeeperError(f"the keeper exited with code {proc.returncode} while starting; "
                                  f"{paths.keeper_log}: {_log_tail(paths.keeper_log)}")
            if proc is None and keeper_pid(paths.state_dir) is None:
                proc = spawn_keeper(paths, config, router_workers)
            if time.monotonic() >= deadline:
                raise KeeperError(f"the keeper did not answer at {paths.keeper_sock} within {timeout:g}s; "
                                  f"see {paths.keeper_log}")
            time.sleep(_POLL)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a keeper we spawned stays our zombie until we reap it)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def stop_keeper(state_dir: Path, timeout: float = 60.0) -> bool:
    """Full stop (instances, agent, routers, keeper) and wait for the keeper to exit; False if none ran."""
    paths = ProxyPaths(Path(state_dir).resolve())
    pid = keeper_pid(paths.state_dir)
    if pid is None:
        return False
    request(paths.state_dir, "stop", timeout=timeout + 15.0, budget=timeout)
    deadline = time.monotonic() + timeout + 15.0
    while keeper_pid(paths.state_dir) is not None or (pid and _running(pid)):
        if time.monotonic() >= deadline:
            raise KeeperError(f"the keeper (pid {keeper_pid(paths.state_dir)}) did not exit within "
                              f"{timeout + 15:g}s; see {paths.keeper_log}")
        time.sleep(_POLL)
    return True
