"""Helpers shared by the agent integration tests (this module holds no tests).

Every test gets its own short state dir under /tmp (unix socket paths are limited to 108 bytes), its
own keeper, router and agent processes, and a token in every app's environment, so teardown can find
and SIGKILL whatever the test left behind, including apps that outlived a killed agent.

The test process makes itself a child subreaper: apps orphaned by a SIGKILLed agent are re-parented to
it rather than to PID 1 (which does not reap on some CI machines), so teardown can reap them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shipyard.agent import pidfile
from shipyard.agent.client import AgentClient
from shipyard.agent.daemon import agent_status, ensure_agent
from shipyard.agent.paths import AgentPaths
from shipyard.proxy import keeper_pid, keeper_status
from shipyard.testing.wait import wait_until as shared_wait_until

T = TypeVar("T")
SHA = "0123456789abcdef0123456789abcdef01234567"
DEADLINE = 30.0   # generous: only reached when something is broken

APP = r'''
import http.server, json, os, signal, sys

mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
print(f"app pid {os.getpid()} mode {mode} port {os.environ.get('PORT')}", flush=True)
print("ENV " + json.dumps(dict(os.environ)), flush=True)
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    def on_term(*_):
        print("got SIGTERM", flush=True)
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/sleep/"):            # a long request, to be in flight on purpose
            import time
            time.sleep(float(self.path.split("/")[2]))
        body = json.dumps({"instance": os.environ.get("SHIPYARD_INSTANCE"), "pid": os.getpid(),
                           "revision": os.environ.get("SHIPYARD_REVISION"), "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        print(f"served {self.path}", flush=True)
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
'''


def wait_until(pred: Callable[[], T], what: str, timeout: float = DEADLINE, interval: float = 0.05) -> T:
    return shared_wait_until(pred, timeout, what, interval)


async def await_until(pred: Callable[[], Awaitable[T]], what: str, timeout: float = DEADLINE,
                      interval: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(interval)


async def http_get(address: str, path: str = "/", timeout: float = 5.0) -> dict[str, Any] | None:
    """GET from an app; None while it is not (yet) answering."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            resp = await http.get(f"http://{address}{path}")
    except httpx.TransportError:
        return None
    return resp.json() if resp.status_code == 200 else None


def agent_answers(state_dir: Path) -> bool:
    return agent_status(state_dir, timeout=2.0) is not None


def set_subreaper(on: bool) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1 if on else 0, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER


def _uptime_ticks() -> int:
    return int(float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK")) - 1


def _zombie_children(since: int) -> list[int]:
    """Our zombie children born after `since`: the agents and orphaned apps of one test, nothing older."""
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{name}/stat").read_text()
            fields = raw[raw.rfind(")") + 2:].split()
            if fields[0] == "Z" and int(fields[1]) == me and int(fields[19]) >= since:
                found.append(int(name))
    return found


class Harness:
    """One state dir, its agent and its apps."""

    def __init__(self, base: Path) -> None:
        self.started = _uptime_ticks()
        self.base = base
        self.state_dir = base / "state"
        self.paths = AgentPaths(self.state_dir)
        self.token = uuid.uuid4().hex
        self.app = base / "app.py"
        self.app.write_text(APP)
        self.pids: set[int] = set()

    def ensure(self) -> int:
        """Start (or find) the agent; returns its pid."""
        ensure_agent(self.state_dir, timeout=DEADLINE)
        pid = pidfile.read_pid(self.paths)
        assert pid, "agent.pid holds no pid"
        self.pids.add(pid)
        return pid

    def agent_pid(self) -> int | None:
        return pidfile.holder(self.paths)

    def keeper(self) -> dict[str, Any]:
        st = keeper_status(self.state_dir)
        assert st is not None, "no keeper answers"
        return st

    def active_router(self) -> int:
        """The pid of the router generation serving now (waits for one)."""
        def active() -> int | None:
            st = keeper_status(self.state_dir)
            return next((r["pid"] for r in (st or {}).get("routers", []) if r["state"] == "active"), None)
        return wait_until(active, "an active router process")

    def standby_ready(self) -> int:
        """Wait for the warm standby router (started a few seconds after a router takes over)."""
        def standby() -> int | None:
            st = keeper_status(self.state_dir)
            return next((r["pid"] for r in (st or {}).get("routers", []) if r["state"] == "standby"), None)
        return wait_until(standby, "a standby router process")

    def new_agent(self, old: int) -> int:
        """Wait for the keeper to bring back an agent other than `old`; its pid."""
        def other() -> int | None:
            pid = self.agent_pid()
            return pid if pid and pid != old and agent_answers(self.state_dir) else None
        pid = wait_until(other, "the keeper to bring the agent back")
        self.pids.add(pid)
        return pid

    def host_pids(self) -> list[int]:
        """Keeper, router and agent processes of this state dir (found by --state-dir in argv)."""
        want = str(self.state_dir.resolve()).encode()
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
                    stat = Path(f"/proc/{name}/stat").read_text()
                    if want in argv and stat.rsplit(")", 1)[1].split()[0] != "Z":
                        found.append(int(name))
        return found

    def client(self) -> AgentClient:
        return AgentClient(self.state_dir, timeout=DEADLINE)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, str(self.app), *args]

    def track(self, record: dict[str, Any]) -> dict[str, Any]:
        if record.get("pid"):
            self.pids.add(record["pid"])
        return record

    async def start_app(self, client: AgentClient, *args: str, argv: list[str] | None = None,
                        wait_http: bool = True, **kw: Any) -> dict[str, Any]:
        kw.setdefault("service", "api")
        kw.setdefault("env", "dev")
        kw.setdefault("revision", SHA)
        environ = {"SHIPYARD_TEST_TOKEN": self.token, **kw.pop("environ", {})}
        rec = self.track(await client.start_instance(argv=argv or self.argv(*args), cwd=str(self.base),
                                                     environ=environ, **kw))
        if wait_http:
            await await_until(lambda: http_get(rec["address"]), f"{rec['id']} to answer HTTP")
        return rec

    async def wait_record(self, client: AgentClient, instance_id: str,
                          pred: Callable[[dict[str, Any]], bool], what: str,
                          timeout: float = DEADLINE) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            rec = self.track(await client.get_instance(instance_id))
            return rec if pred(rec) else None
        return await await_until(check, what, timeout)

    def log_text(self, rec: dict[str, Any]) -> str:
        return Path(rec["log_path"]).read_text(errors="replace")

    def token_pids(self) -> list[int]:
        needle = f"SHIPYARD_TEST_TOKEN={self.token}".encode()
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError):
                    if needle in Path(f"/proc/{name}/environ").read_bytes():
                        found.append(int(name))
        return found

    def cleanup(self) -> None:
        """SIGKILL the keeper first (so nothing is restarted), then the routers, the agent and every app
        of this test; then reap what became our zombie."""
        keeper = keeper_pid(self.state_dir) if self.state_dir.exists() else None
        if keeper:
            with contextlib.suppress(OSError):
                os.kill(keeper, signal.SIGKILL)
            wait_until(lambda: keeper_pid(self.state_dir) is None, "the keeper to die", timeout=10.0)
        agent = self.agent_pid()
        for pid in {*(p for p in [agent] if p), *self.host_pids(), *self.token_pids()}:
            self.pids.add(pid)
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.token_pids() and not self.agent_pid() and not self.host_pids(),
                   "test processes to die", timeout=10.0)
        for pid in _zombie_children(since=self.started):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


@pytest.fixture(name="harness")
def harness_fixture() -> Iterator[Harness]:
    base = Path(tempfile.mkdtemp(prefix="sya-", dir="/tmp"))
    set_subreaper(True)
    h = Harness(base)
    try:
        yield h
    finally:
        h.cleanup()
        set_subreaper(False)
        shutil.rmtree(base, ignore_errors=True)
