"""Kill the CLI with SIGKILL at every step boundary of a rolling deploy, then `shipyard recover`.

After each recovery exactly one revision serves (router and answers agree), no app process is orphaned
(every live app process is an instance the agent knows), and the history shows what really happened.
The kill comes from the engine's failpoint (SHIPYARD_FAILPOINT=after-step:N), so it lands exactly on the
boundary after step N's end was recorded, every time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shipyard.agent.daemon import agent_status, stop_agent
from shipyard.cli.demo import free_port
from shipyard.demo.workspace import commit_version, create_workspace
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store import steps as sq

pytestmark = pytest.mark.timeout(600)
INSTANCES = 2


def cli(ws_root: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "shipyard.cli.main", *args], cwd=ws_root, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


def app_processes(ws_root: Path) -> dict[int, str]:
    """pid -> SHIPYARD_INSTANCE of every live (non-zombie) process started for this workspace."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        values = dict(e.decode(errors="replace").split("=", 1) for e in environ if b"=" in e)
        if values.get("SHIPYARD_INSTANCE") and str(ws_root) in values.get("SHIPYARD_RELEASE_DIR", ""):
            found[int(entry.name)] = values["SHIPYARD_INSTANCE"]
    return found


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("crash")
    port = free_port()
    ws = create_workspace(root, api_port=port, web_port=free_port())
    cfg = ws.root / "shipyard.yaml"
    text = cfg.read_text()
    assert "instances: 3" in text
    cfg.write_text(text.replace("instances: 3", f"instances: {INSTANCES}", 1))   # fewer boundaries, same paths
    yield ws
    stop_agent(ws.root / ".shipyard" / "agent", stop_instances=True)
    deadline = time.monotonic() + 10
    while app_processes(ws.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = app_processes(ws.root)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived the agent: {left}"


def serving(ws) -> tuple[set[str], str]:
    """Revisions with traffic according to the agent's router, and the version the router answers."""
    st = agent_status(ws.root / ".shipyard" / "agent")
    assert st is not None
    router = next(r for r in st["routers"] if (r["service"], r["env"]) == ("api", "stg"))
    revs = {b["revision"] for b in router["backends"] if b["weight"] > 0}
    version = httpx.get(f"http://127.0.0.1:{ws.api_port}/version", timeout=5).json()["version"]
    return revs, version


def test_sigkill_at_every_step_boundary_then_recover(workspace) -> None:
    ws = workspace
    first = cli(ws.root, "deploy", "api", "--env", "stg", "--json")
    assert first.returncode == 0, first.stderr
    v1 = json.loads(first.stdout)["revision"]
    commit_version(ws, "api", "2.0.0")

    # How many steps a rolling deploy of 3 over 3 has: learn it from a dry plan of the same strategy.
    from shipyard.strategies import PlanInput, Rolling, compose
    n_steps = len(compose(Rolling(), PlanInput(current=INSTANCES, desired=INSTANCES)).steps)
    assert n_steps >= 10

    for idx in range(n_steps):
        killed = cli(ws.root, "deploy", "api", "--env", "stg", "--json",
                     env={"SHIPYARD_FAILPOINT": f"after-step:{idx}"})
        assert killed.returncode == -signal.SIGKILL, (idx, killed.returncode, killed.stderr[-500:])

        rec = cli(ws.root, "recover", "--json")
        assert rec.returncode == 0, rec.stderr
        results = json.loads(rec.stdout)["recovered"]
        assert len(results) == 1, results
        outcome = results[0]
        last = idx == n_steps - 1
        assert outcome["state"] == ("succeeded" if last else "rolled_back"), (idx, outcome)

        revs, version = serving(ws)
        assert len(revs) == 1, (idx, revs)
        if last:
            assert version == "2.0.0"
        else:
            assert revs == {v1} and version == "1.0.0", (idx, revs, version)

        # No orphans: every live app process is an instance the agent supervises, and vice versa.
        agent_view = agent_status(ws.root / ".shipyard" / "agent")
        assert agent_view is not None
        known = {i["id"]: i for i in agent_view["instances"]}
        procs = app_processes(ws.root)
        for pid, iid in procs.items():
            assert iid in known and known[iid]["state"] in ("running", "starting"), (idx, pid, iid)
        running = {i["id"] for i in known.values() if i["state"] == "running"}
        assert running <= set(procs.values()), (idx, running - set(procs.values()))

        # The history tells the truth about the killed run.
        with Store.open(f"sqlite:///{ws.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
            dep = dq.list_deployments(s, service="api", env="stg", limit=1)[0]
            assert dep.id == outcome["id"] and dep.state == outcome["state"]
            if not last:
                assert "died" in (dep.reason or "")
            steps = sq.list_steps(s, dep.id)
            deploy_states = [r.state for r in steps if r.phase == "deploy"]
            assert deploy_states[: idx + 1] == ["succeeded"] * (idx + 1)
            assert "running" not in {r.state for r in steps}
            assert dep.finished_at is not None
