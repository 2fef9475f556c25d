"""Instances through a real agent: env and logs, listing, crash restarts, stop, kill, groups, expiry."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from shipyard.agent import procs, pruning
from shipyard.agent.errors import AgentRequestError, ConflictError, NotFoundError

try:
    from .test_agent_support import SHA, Harness, await_until, harness_fixture, http_get, wait_until
except ImportError:
    from test_agent_support import SHA, Harness, await_until, harness_fixture, http_get, wait_until

__all__ = ["harness_fixture"]


def _app_env(log: str) -> dict[str, str]:
    line = next(ln for ln in log.splitlines() if ln.startswith("ENV "))
    env: dict[str, str] = json.loads(line[4:])
    return env


async def test_start_instance_env_port_and_log(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_ONLY_SECRET", "must-not-leak")   # inherited by the agent, not by apps
    harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client, revision=SHA, deployment="deploy-20250101-000000-01234567",
                                      environ={"GREETING": "hello", "PORT": "1"}, labels={"color": "blue"})
        assert rec["id"].startswith(f"api-dev-{SHA[:8]}-") and len(rec["id"].rsplit("-", 1)[1]) == 8
        assert rec["address"] == f"127.0.0.1:{rec['port']}"
        assert (rec["state"], rec["restarts"], rec["labels"]) == ("running", 0, {"color": "blue"})
        assert rec["deployment"] == "deploy-20250101-000000-01234567"
        assert rec["log_path"] == str(harness.state_dir.resolve() / "logs" / f"{rec['id']}.log")

        answer = await http_get(rec["address"], "/hello")
        assert answer == {"instance": rec["id"], "pid": rec["pid"], "revision": SHA, "path": "/hello"}
        log = harness.log_text(rec)
        env = _app_env(log)
        assert env["PORT"] == str(rec["port"])             # the agent's PORT wins over the caller's
        assert env["GREETING"] == "hello"
        assert env["SHIPYARD_INSTANCE"] == rec["id"]
        assert (env["SHIPYARD_SERVICE"], env["SHIPYARD_ENV"], env["SHIPYARD_REVISION"]) == ("api", "dev", SHA)
        assert "AGENT_ONLY_SECRET" not in env
        assert "PATH" in env
        assert f"starting {rec['id']}" in log
        await await_until(lambda: _served(harness, rec), "the request line in the app's log")
        assert (await client.status())["instances"][0]["id"] == rec["id"]


async def _served(harness: Harness, rec: dict[str, Any]) -> bool:
    return "served /hello" in harness.log_text(rec)


async def test_list_filter_and_errors(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        a = await harness.start_app(client, service="api", env="dev", revision="a" * 40, wait_http=False)
        b = await harness.start_app(client, service="api", env="stg", revision="b" * 40, wait_http=False)
        c = await harness.start_app(client, service="web", env="dev", revision="a" * 40, wait_http=False)

        def ids(recs: list[dict[str, Any]]) -> set[str]:
            return {r["id"] for r in recs}

        assert ids(await client.list_instances()) == {a["id"], b["id"], c["id"]}
        assert ids(await client.list_instances(service="api")) == {a["id"], b["id"]}
        assert ids(await client.list_instances(env="dev")) == {a["id"], c["id"]}
        assert ids(await client.list_instances(revision="a" * 40)) == {a["id"], c["id"]}
        assert ids(await client.list_instances(service="api", env="stg", revision="b" * 8)) == {b["id"]}
        assert (await client.get_instance(b["id"]))["env"] == "stg"
        assert len({a["port"], b["port"], c["port"]}) == 3

        with pytest.raises(NotFoundError, match="no instance 'nope'"):
            await client.get_instance("nope")
        with pytest.raises(NotFoundError):
            await client.stop_instance("nope")
        with pytest.raises(AgentRequestError, match="argv"):
            await client.start_instance(service="api", env="dev", revision="x", argv=[], cwd="/")
        with pytest.raises(AgentRequestError, match="cannot start") as err:
            await client.start_instance(service="api", env="dev", revision="x", argv=["/bin/true"],
                                        cwd=str(harness.base / "missing"))
        assert err.value.status == 400
        with pytest.raises(ConflictError, match=f"port {a['port']} is already in use"):
            await client.start_instance(service="api", env="dev", revision="x", argv=["/bin/true"],
                                        cwd="/", port=a["port"])


async def test_crash_is_restarted_and_counted(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
        os.kill(rec["pid"], signal.SIGKILL)
        again = await harness.wait_record(client, rec["id"], lambda r: r["restarts"] == 1
                                          and r["state"] == "running", "the restart after kill -9")
        assert again["pid"] != rec["pid"] and again["port"] == rec["port"]
        assert again["signal"] is None and again["exit_code"] is None   # cleared by the new start
        await await_until(lambda: http_get(rec["address"]), "the restarted app to answer")
        assert f"pid {rec['pid']} exited (signal 9)" in harness.log_text(rec)
        metrics = await client.metrics()
        assert f'instance="{rec["id"]}"}} 1' in metrics


async def test_crash_loop_backs_off(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        started = time.monotonic()
        rec = await harness.start_app(client, "exit", "3", wait_http=False)
        seen_backoff = await harness.wait_record(client, rec["id"], lambda r: r["state"] == "backoff",
                                                 "the backoff state")
        assert seen_backoff["exit_code"] == 3 and seen_backoff["next_restart_at"] is not None
        await harness.wait_record(client, rec["id"], lambda r: r["restarts"] >= 3, "three restarts")
        # Delays 0.5 + 1 + 2 s come before the third restart: a floor that only backoff explains.
        assert time.monotonic() - started >= 3.4
        stopped = await client.stop_instance(rec["id"])
        assert stopped["state"] == "stopped" and stopped["killed"] is False


async def test_stop_sends_sigterm_and_reports(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client)
        result = await client.stop_instance(rec["id"], timeout=20)
        assert result == {"id": rec["id"], "state": "stopped", "exit_code": 0, "signal": None,
                          "killed": False}
        assert not procs.is_running(rec["pid"])
        assert "got SIGTERM" in harness.log_text(rec)
        assert (await client.get_instance(rec["id"]))["state"] == "stopped"
        assert await client.stop_instance(rec["id"]) == result          # stopping again is a no-op


async def test_app_ignoring_sigterm_is_killed_after_stop_timeout(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client, "ignore-term", stop_timeout=1.0)
        began = time.monotonic()
        result = await client.stop_instance(rec["id"])
        assert time.monotonic() - began >= 0.9
        assert (result["killed"], result["signal"], result["exit_code"]) == (True, 9, None)
        assert not procs.is_running(rec["pid"])


async def test_sh_c_children_die_with_the_group(harness: Harness) -> None:
    harness.ensure()
    script = f"{' '.join(harness.argv())} & sleep 300 & wait"
    async with harness.client() as client:
        rec = await harness.start_app(client, argv=["/bin/sh", "-c", script])
        members = procs.group_members(rec["pid"])
        assert rec["pid"] in members and len(members) >= 3           # sh, python app, sleep
        result = await client.stop_instance(rec["id"], timeout=20)
        assert result["killed"] is False
        wait_until(lambda: not procs.group_members(rec["pid"]), "the whole group to be gone", timeout=5)


async def test_crash_of_sh_leader_kills_its_children_before_restart(harness: Harness) -> None:
    harness.ensure()
    script = f"{' '.join(harness.argv())} & wait"
    async with harness.client() as client:
        rec = await harness.start_app(client, argv=["/bin/sh", "-c", script])
        children = [p for p in procs.group_members(rec["pid"]) if p != rec["pid"]]
        os.kill(rec["pid"], signal.SIGKILL)
        again = await harness.wait_record(client, rec["id"], lambda r: r["restarts"] == 1
                                          and r["state"] == "running", "the restart")
        assert all(not procs.is_running(p) for p in children)
        answer = await await_until(lambda: http_get(rec["address"]), "the new app on the same port")
        assert answer["pid"] not in children and again["pid"] != rec["pid"]


async def test_expire_stops_at_the_time_and_can_be_cancelled(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        keep = await harness.start_app(client, wait_http=False)
        gone = await harness.start_app(client, wait_http=False)
        at = time.time() + 1.5
        assert (await client.expire_instance(keep["id"], time.time() + 1.0))["expires_at"] is not None
        assert (await client.expire_instance(keep["id"], None))["expires_at"] is None
        assert (await client.expire_instance(gone["id"], at))["expires_at"] == pytest.approx(at)
        ended = await harness.wait_record(client, gone["id"], lambda r: r["state"] == "stopped",
                                          "the expiry to stop the instance")
        assert ended["stopped_at"] >= at - 0.05
        assert (await client.get_instance(keep["id"]))["state"] == "running"
        with pytest.raises(AgentRequestError) as err:
            await client.expire_instance(gone["id"], time.time())
        assert err.value.status == 409


async def test_no_restart_instance_ends_exited(harness: Harness) -> None:
    harness.ensure()
    async with harness.client() as client:
        rec = await harness.start_app(client, "exit", "7", wait_http=False, restart=False)
        done = await harness.wait_record(client, rec["id"], lambda r: r["state"] == "exited", "exited")
        assert (done["exit_code"], done["restarts"]) == (7, 0)


async def test_ended_instances_are_pruned_with_their_logs(harness: Harness) -> None:
    """state.json, the agent's tables and logs/ stay bounded: the newest ended instances per service/env
    are kept (show and logs still work for them), older ones are forgotten with their log files."""
    harness.ensure()
    keep = pruning.KEEP_PER_ENV
    async with harness.client() as client:
        ended = []
        for _ in range(keep + 5):
            rec = await harness.start_app(client, argv=["true"], restart=False, wait_http=False)
            ended.append(await harness.wait_record(client, rec["id"], lambda r: r["state"] == "exited",
                                                   "the instance to exit"))
        other = await harness.start_app(client, argv=["true"], restart=False, wait_http=False, env="stg")
        await harness.wait_record(client, other["id"], lambda r: r["state"] == "exited", "the stg one")
        listed = {i["id"] for i in await client.list_instances()}
        newest = {r["id"] for r in ended[-keep:]}
        assert listed == newest | {other["id"]}           # another env keeps its own
        for gone in ended[:5]:
            with pytest.raises(NotFoundError):
                await client.get_instance(gone["id"])
            assert not Path(gone["log_path"]).exists()
        assert all(Path(r["log_path"]).exists() for r in ended[-keep:])
    saved = json.loads(harness.paths.state.read_text())["instances"]
    assert {i["id"] for i in saved} == listed
    assert len(list(harness.paths.logs.iterdir())) == keep + 1
