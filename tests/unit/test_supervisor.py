"""Supervisor in-process (no agent, no HTTP), plus its helpers: backoff, env, /proc facts, state file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shipyard.agent import procs
from shipyard.agent.errors import AgentRequestError, NotFoundError
from shipyard.agent.spec import Backoff, InstanceSpec, build_env
from shipyard.agent.state import AgentState, InstanceRecord, StateFile
from shipyard.agent.supervisor import Supervisor

DEADLINE = 20.0


async def _until(pred, what: str, timeout: float = DEADLINE):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := pred()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
    return value


def test_backoff_doubles_up_to_the_cap() -> None:
    b = Backoff()
    assert [b.delay(n) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert b.delay(10_000) == 30


def test_build_env_is_minimal_and_agent_values_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOMETHING_OF_THE_AGENT", "x")
    rec = InstanceRecord(id="api-dev-01234567-abcd", service="api", env="dev", revision="0123456789",
                         cwd="/", argv=["x"], port=8123, log_path="/dev/null", deployment="d1",
                         environ={"PORT": "1", "SHIPYARD_ENV": "spoofed", "DATABASE_URL": "db"})
    env = build_env(rec)
    assert "SOMETHING_OF_THE_AGENT" not in env
    assert env["PORT"] == "8123" and env["SHIPYARD_ENV"] == "dev" and env["DATABASE_URL"] == "db"
    assert env["SHIPYARD_INSTANCE"] == rec.id and env["SHIPYARD_DEPLOYMENT"] == "d1"
    assert env["PATH"]


def test_proc_facts_tell_zombies_and_reused_pids_apart() -> None:
    me = procs.read_stat(os.getpid())
    assert me is not None and me.alive
    assert procs.is_running(os.getpid(), me.start_time)
    assert not procs.is_running(os.getpid(), me.start_time + 1)      # same pid, other process
    child = subprocess.Popen(["true"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)      # exited, not reaped: a zombie
        assert procs.read_stat(child.pid).state == "Z"               # type: ignore[union-attr]
        assert not procs.is_running(child.pid)
    finally:
        child.wait()
    assert procs.read_stat(child.pid) is None or not procs.is_running(child.pid)


def test_state_file_round_trip_is_private_and_survives_corruption(tmp_path: Path) -> None:
    sf = StateFile(tmp_path / "state.json")
    assert sf.load() == AgentState()
    rec = InstanceRecord(id="i", service="s", env="e", revision="r", cwd="/", argv=["a"], port=1,
                         log_path="l", environ={"SECRET": "v"}, pid=5, pid_start=7, expires_at=1.5)
    # Routers of a version that ran them inside the agent are carried as they were, for the router
    # processes to take over (proxy.table); the agent itself no longer keeps any.
    legacy = {"service": "s", "env": "e", "listen": "127.0.0.1:1",
              "backends": [{"address": "127.0.0.1:2", "weight": 1, "revision": "r", "instance": "i"}]}
    sf.save(AgentState(instances=[rec], legacy_routers=[legacy]))
    assert stat.S_IMODE(sf.path.stat().st_mode) == 0o600
    assert sf.load() == AgentState(instances=[rec], legacy_routers=[legacy])
    assert "environ" not in rec.public() and rec.public()["address"] == "127.0.0.1:1"
    assert sorted(tmp_path.iterdir()) == sorted([sf.path, sf.key_path])  # no temp file left behind

    sf.path.write_text("{not json")
    assert sf.load() == AgentState()
    assert [p.name.startswith("state.json.corrupt-") for p in tmp_path.iterdir() if p != sf.key_path] == [True]


def _spec(tmp_path: Path, script: str, **kw: object) -> InstanceSpec:
    return InstanceSpec(service="svc", env="test", revision="feedface" * 5, cwd=str(tmp_path),
                        argv=[sys.executable, "-c", script], **kw)  # type: ignore[arg-type]


async def test_start_and_stop_in_process(sup: Supervisor, tmp_path: Path) -> None:
    script = "import os, time; print('port', os.environ['PORT'], flush=True); time.sleep(300)"
    rec = await sup.start(_spec(tmp_path, script, labels={"k": "v"}))
    assert rec.state == "running" and procs.is_running(rec.pid or 0, rec.pid_start)
    await _until(lambda: f"port {rec.port}" in Path(rec.log_path).read_text(), "the app's output")
    assert sup.find(service="svc", revision="feedface") == [rec]
    result = await sup.stop(rec.id, timeout=10)
    assert result == {"id": rec.id, "state": "stopped", "exit_code": None, "signal": signal.SIGTERM,
                      "killed": False}
    with pytest.raises(NotFoundError):
        sup.get("missing")


async def test_exit_is_noticed_and_restarted_with_backoff(sup: Supervisor, tmp_path: Path) -> None:
    changes: list[str] = []
    sup._on_change = lambda: changes.append("x")
    rec = await sup.start(_spec(tmp_path, "import sys; sys.exit(4)"))
    await _until(lambda: rec.restarts >= 3, "three restarts")
    assert rec.exit_code == 4 or rec.state == "running"
    assert changes, "every change is reported for persistence"
    await sup.stop(rec.id)
    assert rec.state == "stopped"


async def test_no_restart_means_exited(sup: Supervisor, tmp_path: Path) -> None:
    rec = await sup.start(_spec(tmp_path, "import sys; sys.exit(2)", restart=False))
    await _until(lambda: rec.state == "exited", "the exit")
    assert (rec.exit_code, rec.restarts, rec.pid) == (2, 0, None)


async def test_sigterm_ignored_then_killed(sup: Supervisor, tmp_path: Path) -> None:
    script = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True);"
              " time.sleep(300)")
    rec = await sup.start(_spec(tmp_path, script, stop_timeout=0.3))
    await _until(lambda: "ready" in Path(rec.log_path).read_text(), "the handler to be installed")
    result = await sup.stop(rec.id)
    assert (result["killed"], result["signal"]) == (True, signal.SIGKILL)


async def test_expire_and_concurrent_stops(sup: Supervisor, tmp_path: Path) -> None:
    rec = await sup.start(_spec(tmp_path, "import time; time.sleep(300)"))
    sup.expire(rec.id, time.time() + 0.2)
    _, second = await asyncio.gather(
        _until(lambda: rec.state == "stopped", "the expiry"), sup.stop(rec.id))
    assert second["state"] == "stopped"
    with pytest.raises(AgentRequestError):
        sup.expire(rec.id, None)


async def test_bad_argv_is_refused(sup: Supervisor, tmp_path: Path) -> None:
    with pytest.raises(AgentRequestError, match="cannot start"):
        await sup.start(InstanceSpec(service="s", env="e", revision="r", cwd=str(tmp_path),
                                     argv=[str(tmp_path / "no-such-binary")]))
    assert sup.records() == []


async def test_restore_adopts_live_and_restarts_dead(tmp_path: Path) -> None:
    old = Supervisor(tmp_path / "logs")
    live = await old.start(_spec(tmp_path, "import time; time.sleep(300)"))
    dead = await old.start(_spec(tmp_path, "import time; time.sleep(300)"))
    saved = [InstanceRecord.from_dict(json.loads(json.dumps(r.__dict__))) for r in old.records()]
    old.detach()
    os.kill(dead.pid or 0, signal.SIGKILL)
    await _until(lambda: not procs.is_running(dead.pid or 0), "the kill")

    new = Supervisor(tmp_path / "logs")
    try:
        new.restore(saved)
        assert new.get(live.id).pid == live.pid and new.get(live.id).state == "running"
        again = new.get(dead.id)
        assert again.restarts == 1 and again.pid not in (None, dead.pid)
        os.kill(live.pid or 0, signal.SIGKILL)                        # adopted: not our child any more
        await _until(lambda: new.get(live.id).restarts == 1 and new.get(live.id).state == "running",
                     "the adopted crash to be noticed")
    finally:
        await new.stop_all()
        for pid in (live.pid, dead.pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid or 0, os.WNOHANG)


def test_pruning_bounds_ended_instances_by_age_and_count(tmp_path: Path) -> None:
    from shipyard.agent import pruning

    def rec(i: int, state: str, stopped: float | None, env: str = "e") -> InstanceRecord:
        return InstanceRecord(id=f"i{i}", service="s", env=env, revision="r", cwd="/", argv=["a"], port=i,
                              log_path=str(tmp_path / f"i{i}.log"), state=state, stopped_at=stopped)

    now = 10_000.0
    recs = [rec(i, "stopped", now - i) for i in range(5)] + [rec(9, "running", None), rec(8, "exited", now - 1, "f"),
                                                                 rec(7, "exited", now - 5000)]
    # newest 2 per (service, env) kept; anything older than max_age goes; live ones never.
    assert sorted(pruning.expired(recs, now, max_age=3600, keep=2)) == ["i2", "i3", "i4", "i7"]
    assert pruning.expired(recs, now, max_age=4, keep=10) == ["i7"]
    for name in ("i1.log", "stranger.log", "notes.txt"):
        (tmp_path / name).write_text("x")
    os.utime(tmp_path / "stranger.log", (now - 7200, now - 7200))
    os.utime(tmp_path / "i1.log", (now - 7200, now - 7200))
    assert pruning.orphan_logs(tmp_path, {"i1"}, max_age=3600, now=now) == [tmp_path / "stranger.log"]
