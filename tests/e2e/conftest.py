"""End-to-end helpers: a real demo workspace per test (or module), and the real CLI run as subprocesses.

Every CLI call runs `python -m shipyard.cli.main` with the workspace as cwd, a CI-like environment and a
timeout, and returns what a user would have seen (exit code, stdout, stderr). Teardown stops the
workspace's agent and then checks that no process of the workspace is left behind: an app instance, the
agent or a CLI still running there is a leak, and a leak is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from shipyard.agent.daemon import agent_status, stop_agent
from shipyard.demo.workspace import Workspace, create_workspace
from shipyard.ipc import free_port
from shipyard.store import Store
from shipyard.testing.cli import CliResult as Result
from shipyard.testing.cli import cli_argv
from shipyard.testing.cli import run_cli as shared_run_cli
from shipyard.testing.servers import missing_server
from shipyard.testing.wait import wait_until

CLI_TIMEOUT = 90.0          # one CLI call; a deploy of the demo api takes a few seconds
CLEANUP_TIMEOUT = 15.0      # processes of a stopped agent must be gone by then
UNFINISHED = ("queued", "awaiting_approval", "in_progress", "rolling_back")




def cli_env(**extra: str) -> dict[str, str]:
    """A CI-like environment: no terminal, no colour, unbuffered output, a fixed width and actor."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(CI="true", PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb", COLUMNS="80", LINES="24",
               SHIPYARD_ACTOR="e2e")
    env.pop("FORCE_COLOR", None)
    env.update(extra)
    return env


def run_cli(cwd: Path, *args: str, timeout: float = CLI_TIMEOUT, env: dict[str, str] | None = None) -> Result:
    return shared_run_cli(cwd, *args, env=env or cli_env(), timeout=timeout)


def assert_ok(res: Result) -> Result:
    assert res.returncode == 0, str(res)
    assert "Traceback" not in res.stderr + res.stdout, str(res)
    return res


def assert_one_error(res: Result, *codes: int) -> str:
    """Exit code in `codes`, exactly one non-empty stderr line, starting with "error:", no traceback."""
    assert res.returncode in codes, str(res)
    assert "Traceback" not in res.stderr + res.stdout, str(res)
    lines = res.error_lines
    assert len(lines) == 1, f"expected one error line:\n{res}"
    assert lines[0].startswith("error: "), str(res)
    return lines[0]


class Background:
    """A CLI call running in the background, its output read line by line (so tests can wait for a line)."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cli_argv(*args), cwd=cwd, env=env or cli_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, True), daemon=True),
                         threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, False), daemon=True)]
        for t in self._readers:
            t.start()

    def _pump(self, stream: Any, sink: list[str], notify: bool) -> None:
        for line in stream:
            sink.append(line)
            if notify:
                self.lines.put(line)

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> str:
        """The first stdout line (from now on) matching `pattern`; fails at the deadline or on exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            if rx.search(line):
                return line
        raise AssertionError(f"no line matching {pattern!r} from shipyard {' '.join(self.args)} "
                             f"(exit {self.proc.poll()}):\n{''.join(self.out)}\n{''.join(self.err)}")

    def finish(self, timeout: float = CLI_TIMEOUT) -> Result:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for t in self._readers:
            t.join(5)
        return Result(self.args, self.proc.returncode, "".join(self.out), "".join(self.err),
                      time.monotonic() - self.started)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def get_version(port: int, timeout: float = 5.0) -> dict[str, Any]:
    """GET /version through the router (a fresh connection, like curl)."""
    resp = httpx.get(f"http://127.0.0.1:{port}/version", timeout=timeout)
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


# ---- processes of a workspace ------------------------------------------------------------------------

def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def workspace_processes(root: Path) -> dict[int, str]:
    """pid -> command line of every live process that belongs to the workspace under `root`.

    Belongs: `root` appears in its environment (app instances get SHIPYARD_RELEASE_DIR under it) or its
    command line (the agent's --state-dir), or it runs inside `root` (a CLI left running).
    """
    prefix = f"{root}/"
    needle = prefix.encode()
    me = os.getpid()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        stat = _read(f"/proc/{pid}/stat")
        if not stat or stat.rsplit(b")", 1)[-1].split()[0] in (b"Z", b"X"):
            continue
        cmdline = _read(f"/proc/{pid}/cmdline")
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        if needle in cmdline or needle in _read(f"/proc/{pid}/environ") or f"{cwd}/".startswith(prefix):
            found[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def instance_processes(root: Path) -> dict[int, str]:
    """pid -> SHIPYARD_REVISION of the app instances of the workspace still running."""
    out: dict[int, str] = {}
    for pid in workspace_processes(root):
        env = dict(item.split(b"=", 1) for item in _read(f"/proc/{pid}/environ").split(b"\0") if b"=" in item)
        if b"SHIPYARD_INSTANCE" in env:
            out[pid] = env.get(b"SHIPYARD_REVISION", b"").decode()
    return out


# ---- the workspace -----------------------------------------------------------------------------------

@dataclass
class E2E:
    """A demo workspace and how to drive it through the CLI."""

    ws: Workspace
    env: dict[str, str] = field(default_factory=cli_env)

    @property
    def root(self) -> Path:
        return self.ws.root

    @property
    def agent_dir(self) -> Path:
        return self.ws.root / ".shipyard" / "agent"

    @property
    def api_port(self) -> int:
        return self.ws.api_port

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT, **extra_env: str) -> Result:
        return run_cli(self.root, *args, timeout=timeout, env={**self.env, **extra_env})

    def background(self, *args: str, **extra_env: str) -> Background:
        return Background(self.root, *args, env={**self.env, **extra_env})

    def deploy(self, service: str = "api", *extra: str, env: str = "stg", timeout: float = CLI_TIMEOUT) -> Result:
        return self.cli("deploy", service, "--env", env, *extra, timeout=timeout)

    def deployments(self) -> list[dict[str, Any]]:
        """Rows of the deployments table, newest first, read without opening shipyard's store."""
        db = self.root / ".shipyard" / "state.db"
        if not db.exists():
            return []
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM deployments ORDER BY created_at DESC")]
        finally:
            con.close()

    def agent_instances(self) -> list[dict[str, Any]]:
        """The agent's instances, or [] when no agent runs."""
        if not self.agent_dir.is_dir():
            return []
        st = agent_status(self.agent_dir)
        return list(st.get("instances", [])) if st else []

    def edit_config(self, edit: Callable[[str], str]) -> str:
        """Rewrite shipyard.yaml with `edit`; returns the previous text (to restore it)."""
        old = self.ws.config_path.read_text(encoding="utf-8")
        new = edit(old)
        assert new != old, "the config edit changed nothing"
        self.ws.config_path.write_text(new, encoding="utf-8")
        return old

    def stop(self) -> None:
        """Stop the agent and every instance, then require that no process of the workspace is left."""
        failures: list[str] = []
        if self.agent_dir.is_dir():
            try:
                stop_agent(self.agent_dir, stop_instances=True, timeout=30)
            except Exception as exc:
                failures.append(f"stopping the agent failed: {exc!r}")
        try:
            wait_until(lambda: not workspace_processes(self.root), CLEANUP_TIMEOUT,
                       "the workspace's processes to exit", interval=0.2)
        except AssertionError:
            left = workspace_processes(self.root)
            for pid in left:        # do not leak them into the rest of the run, but still fail
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            failures.append(f"processes of {self.root} left running: {left}")
        if failures:
            pytest.fail("; ".join(failures), pytrace=False)


def start_serve(e2e: E2E) -> tuple[Background, str]:
    """`shipyard serve` of the workspace on a free loopback port, once it answers; and its base URL."""
    port = free_port()
    server = e2e.background("serve", "--listen", f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.proc.poll() is None, "".join(server.err)
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    wait_until(up, 60, "shipyard serve")
    return server, url


def stop_serve(server: Background) -> str:
    """SIGTERM it, require a clean exit 0 (it waits for the runs it holds), and return all it printed."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    res = server.finish(timeout=150)
    assert res.returncode == 0, str(res)
    return res.stdout + res.stderr


def store_of(e2e: E2E) -> Store:
    """The workspace's state store, as its config names it (close it: use it as a context manager)."""
    from shipyard.config import load_config

    return Store.open(load_config(e2e.root / "shipyard.yaml", environ=e2e.env).state_url)


def gate_row(e2e: E2E, env: str, dep_id: str | None = None) -> dict[str, Any] | None:
    """The newest deployment of api to `env` (or `dep_id`) as a gate sees it: its state, times, events,
    the env's lease, and the approval request's holder, grant and decisions."""
    from shipyard.store import approvals as aq
    from shipyard.store import deployments as dq
    from shipyard.store import events as eq
    from shipyard.store import leases as lq

    with store_of(e2e) as store, store.session(readonly=True) as s:
        found = dq.get_deployment(s, dep_id) if dep_id else next(iter(dq.list_deployments(
            s, service="api", env=env, limit=1)), None)
        if found is None:
            return None
        lease = lq.get_lease(s, "api", env)
        req = aq.get_request(s, found.id)
        return {"id": found.id, "state": found.state, "reason": found.reason, "started_at": found.started_at,
                "finished_at": found.finished_at, "granted_at": req.granted_at if req else None,
                "holder": req.holder if req else None, "lease": lease.deployment_id if lease else None,
                "events": [e.kind for e in reversed(eq.list_events(s, deployment_id=found.id, limit=500))],
                "decisions": [(d.approver, d.decision, d.via) for d in aq.list_decisions(s, found.id)]}


def make_tokens(e2e: E2E, scopes: dict[str, str]) -> dict[str, str]:
    """`shipyard tokens create` for each name (scopes comma-separated); the token texts by name."""
    made = {}
    for name, granted in scopes.items():
        res = assert_ok(e2e.cli("tokens", "create", "--name", name, "--scopes", granted, "--json"))
        made[name] = json.loads(res.stdout)["token"]
    return made


def make_workspace(root: Path) -> E2E:
    return E2E(create_workspace(root, api_port=free_port(), web_port=free_port()))


T = TypeVar("T")


@contextlib.contextmanager
def behind_proxy(root: Path, binary: str | None, missing: str,
                 start: Callable[[str, int], contextlib.AbstractContextManager[T]],
                 router: Callable[[T], str]) -> Iterator[tuple[E2E, T]]:
    """A workspace at `root` whose api is routed by a real proxy: `start(binary, api_port)` runs it on the
    api's port, `router(proxy)` is the deploy.router flow mapping that replaces the builtin one; a missing
    `binary` is missing_server(`missing`). The proxy is stopped, then the workspace, when the block ends."""
    if binary is None:
        missing_server(missing)
    e2e = make_workspace(root)
    try:
        with start(binary, e2e.api_port) as proxy:
            e2e.edit_config(lambda text: text.replace(
                f'router: {{type: builtin, listen: "127.0.0.1:{e2e.api_port}"}}', f"router: {router(proxy)}", 1))
            yield e2e, proxy
    finally:
        e2e.stop()


@pytest.fixture
def new_workspace(tmp_path: Path) -> Iterator[Callable[[], E2E]]:
    """A factory of fresh workspaces for one test; each is stopped and checked for leaks afterwards."""
    made: list[E2E] = []

    def make() -> E2E:
        e2e = make_workspace(tmp_path / f"ws{len(made)}")
        made.append(e2e)
        return e2e

    yield make
    for e2e in made:
        e2e.stop()


@pytest.fixture(scope="module")
def module_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    """One workspace shared by a module's tests; stopped and checked for leaks at the end."""
    e2e = make_workspace(tmp_path_factory.mktemp("e2e") / "ws")
    try:
        yield e2e
    finally:
        e2e.stop()
