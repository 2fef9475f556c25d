"""Release groups end to end: four real services (the demo app, each in its own git repo, its own router),
released in two waves through the CLI; a failing member in the last wave rolls every member back; the CLI
SIGKILLed at every member boundary, then `shipyard recover` finishes or rolls back the whole group.

The kills come from failpoints (SHIPYARD_FAILPOINT): `group-before-wave:N` in engine.groups (N = 0 before the
first wave, 1 between the waves, 2 after the last), and `SERVICE:after-step:N` in engine.run (mid-member).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_crash_recovery import app_processes, cli

from shipyard.agent.daemon import agent_status, stop_agent
from shipyard.cli.demo import free_port
from shipyard.demo.group_workspace import SERVICES, GroupWorkspace, commit, create_group_workspace
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store import groups as gq
from shipyard.store.models import QueueEntry
from shipyard.testing.cli import cli_argv
from shipyard.testing.processes import stop_process
from shipyard.testing.wait import wait_until

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("groups")
    workspace = create_group_workspace(root, {s: free_port() for s in SERVICES}, instances=1)
    yield workspace
    stop_agent(workspace.root / ".shipyard" / "agent", stop_instances=True)
    deadline = time.monotonic() + 10
    while app_processes(workspace.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = app_processes(workspace.root)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived the agent: {left}"


def serving(ws: GroupWorkspace) -> dict[str, tuple[set[str], str]]:
    """service -> (revisions with traffic in its router, the version its front address answers)."""
    st = agent_status(ws.root / ".shipyard" / "agent")
    assert st is not None
    out = {}
    for svc in SERVICES:
        router = next(r for r in st["routers"] if (r["service"], r["env"]) == (svc, "stg"))
        revs = {b["revision"] for b in router["backends"] if b["weight"] > 0}
        out[svc] = (revs, httpx.get(ws.url(svc), timeout=5).json()["version"])
    return out


def assert_serving(ws: GroupWorkspace, version: str) -> None:
    for svc, (revs, answered) in serving(ws).items():
        assert len(revs) == 1 and answered == version, (svc, revs, answered, version)


def assert_no_orphans(ws: GroupWorkspace) -> None:
    view = agent_status(ws.root / ".shipyard" / "agent")
    assert view is not None
    known = {i["id"]: i for i in view["instances"]}
    for pid, iid in app_processes(ws.root).items():
        assert iid in known and known[iid]["state"] in ("running", "starting"), (pid, iid)


def store(ws: GroupWorkspace) -> Store:
    return Store.open(f"sqlite:///{ws.root / '.shipyard' / 'state.db'}")


def release(ws: GroupWorkspace, *args: str, **env: str) -> Any:
    return cli(ws.root, "release", "platform", "--env", "stg", "--json", *args, env=env, timeout=240)


def test_clean_release_then_a_failing_last_wave_rolls_every_member_back(ws: GroupWorkspace) -> None:
    first = release(ws)
    assert first.returncode == 0, first.stderr[-2000:]
    for svc in SERVICES:
        commit(ws, svc, "2.0.0")
    clean = release(ws)
    assert clean.returncode == 0, clean.stderr[-2000:]
    done = json.loads(clean.stdout)
    assert done["state"] == "succeeded" and [m["state"] for m in done["members"]] == ["succeeded"] * 4
    assert [m["wave"] for m in done["members"]] == [1, 1, 2, 2]
    assert_serving(ws, "2.0.0")

    for svc in SERVICES[:3]:
        commit(ws, svc, "3.0.0")
    commit(ws, "user-web", "3.0.0", health_fail=True)
    failing = release(ws)
    assert failing.returncode == 1, failing.stderr[-2000:]
    assert "aborted: user-web" in failing.stderr and failing.stderr.count("\n") == 1
    aborted = json.loads(failing.stdout)
    assert aborted["state"] == "rolled_back", aborted
    states = {m["service"]: m for m in aborted["members"]}
    assert {s: m["state"] for s, m in states.items()} == dict.fromkeys(SERVICES, "rolled_back")
    # The first wave went back through the ordinary rollback (a traffic flip: the v2 set was warm).
    for svc in ("api", "ws"):
        assert states[svc]["rollback_id"], states[svc]
    assert_serving(ws, "2.0.0")
    assert_no_orphans(ws)

    with store(ws) as st, st.session() as s:
        for svc in ("api", "ws"):
            flip = dq.get_deployment(s, states[svc]["rollback_id"])
            assert flip is not None and (flip.kind, flip.strategy, flip.state) == ("rollback", "traffic_flip",
                                                                                  "succeeded")
            forward = dq.get_deployment(s, states[svc]["deployment_id"])
            assert forward is not None and forward.state == "rolled_back"
        # Reverse wave order: the second wave was back before the first wave's flips started.
        wave2_end = max(dq.get_deployment(s, states[x]["deployment_id"]).finished_at  # type: ignore[union-attr]
                        for x in ("admin-web", "user-web"))
        flips = [dq.get_deployment(s, states[x]["rollback_id"]) for x in ("api", "ws")]
        assert all(f is not None and f.started_at is not None and f.started_at >= wave2_end for f in flips)

    shown = cli(ws.root, "show", aborted["id"][:-4], "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["release"]["members"] == aborted["members"]
    text = cli(ws.root, "show", aborted["id"])
    assert text.returncode == 0 and "user-web" in text.stdout and "rolled_back" in text.stdout
    listed = cli(ws.root, "history", "--releases", "--json")
    assert [r["state"] for r in json.loads(listed.stdout)["releases"][:3]] == ["rolled_back", "succeeded",
                                                                               "succeeded"]


def test_refusals_are_one_line_and_record_nothing(ws: GroupWorkspace) -> None:
    with store(ws) as st, st.session() as s:
        before = len(gq.list_groups(s, limit=100))
    for args, message in ((("release", "nope", "--env", "stg"), "unknown release group 'nope'"),
                          (("release", "platform", "--env", "qa"), "unknown environment 'qa'"),
                          (("release", "platform", "--env", "stg", "--rev", "db=abc"), "'db' is not a member"),
                          (("release", "platform", "--env", "stg", "--rev", "api=no-such-ref"), "no-such-ref")):
        done = cli(ws.root, *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and done.stderr.count("\n") == 1, (args, done.stderr)
    with store(ws) as st, st.session() as s:
        assert len(gq.list_groups(s, limit=100)) == before


BOUNDARIES = ["group-before-wave:0", "ws:after-step:1", "group-before-wave:1", "user-web:after-step:2",
              "group-before-wave:2"]


@pytest.mark.parametrize("failpoint", BOUNDARIES)
def test_sigkill_at_a_member_boundary_then_recover_does_the_whole_group(ws: GroupWorkspace, failpoint: str) -> None:
    before = serving(ws)["api"][1]
    version = f"4.{BOUNDARIES.index(failpoint)}.0"
    for svc in SERVICES:
        commit(ws, svc, version)
    killed = release(ws, SHIPYARD_FAILPOINT=failpoint)
    assert killed.returncode == -signal.SIGKILL, (failpoint, killed.returncode, killed.stderr[-1000:])

    # A plain deploy of a member does not undo half the group: it names the group and asks for recover.
    plain = cli(ws.root, "deploy", "api", "--env", "stg")
    assert plain.returncode == 2 and "run `shipyard recover` first" in plain.stderr, plain.stderr

    rec = cli(ws.root, "recover", "--json", timeout=240)
    assert rec.returncode == 0, rec.stderr[-2000:]
    results = json.loads(rec.stdout)["recovered"]
    groups = [r for r in results if r["id"].startswith("release-")]
    assert len(groups) == 1, results
    finished = failpoint == "group-before-wave:2"     # every member had succeeded: recover finishes it
    assert groups[0]["state"] == ("succeeded" if finished else "rolled_back"), (failpoint, results)
    assert not [r for r in results if r not in groups], results      # no member recovered on its own

    assert_serving(ws, version if finished else before)
    assert_no_orphans(ws)
    with store(ws) as st, st.session() as s:
        row = gq.get_group(s, groups[0]["id"])
        assert row is not None and row.finished_at is not None
        members = {m.service: m.state for m in gq.members(s, row.id)}
        wanted = {"succeeded"} if finished else {"rolled_back", "cancelled", "unchanged"}
        assert set(members.values()) <= wanted, (failpoint, members)
        for svc in SERVICES:
            assert not dq.find_unfinished(s, service=svc, env="stg"), (failpoint, svc)
        assert gq.find_unfinished(s) == []


def test_the_api_lists_reads_and_starts_releases_within_the_tokens_envs(ws: GroupWorkspace) -> None:
    commit(ws, "user-web", "5.0.0")       # healthy, whatever the tests before left on stg
    tokens = {}
    for name, scopes, env in (("stg-deployer", "deploy", "stg"), ("prod-deployer", "deploy", "prod"),
                              ("stg-reader", "read", "stg"), ("prod-reader", "read", "prod")):
        made = cli(ws.root, "tokens", "create", "--name", name, "--scopes", scopes, "--env", env, "--json")
        assert made.returncode == 0, made.stderr
        tokens[name] = json.loads(made.stdout)["token"]
    port = free_port()
    proc = subprocess.Popen(cli_argv("serve", "--listen", f"127.0.0.1:{port}"), cwd=ws.root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/api/v1"

    def call(method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, url + path, headers={"Authorization": f"Bearer {tokens[token]}"},
                             timeout=30, **kw)
    try:
        def up() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(up, 30, "shipyard serve to answer")
        body = {"name": "platform", "env": "stg"}
        assert call("POST", "/releases", "prod-deployer", json=body).status_code == 403
        assert call("POST", "/releases", "stg-reader", json=body).status_code == 403
        assert call("POST", "/releases", "stg-deployer", json={**body, "name": "nope"}).status_code == 400
        assert call("POST", "/releases", "stg-deployer", json={**body, "extra": 1}).status_code == 422
        started = call("POST", "/releases", "stg-deployer", json=body)
        assert started.status_code == 202, started.text
        gid = started.json()["id"]

        def finished() -> bool:
            return call("GET", f"/releases/{gid}", "stg-reader").json()["release"]["state"] not in (
                "queued", "in_progress", "aborting")
        wait_until(finished, 180, "the release started through the API to end")
        shown = call("GET", f"/releases/{gid}", "stg-reader").json()["release"]
        assert shown["state"] == "succeeded" and shown["actor"] == "stg-deployer", shown
        assert call("GET", f"/releases/{gid}", "prod-reader").status_code == 403
        assert call("GET", "/releases/release-nope", "stg-reader").status_code == 404
        listed = call("GET", "/releases", "stg-reader").json()["releases"]
        assert listed[0]["id"] == gid and len(listed[0]["members"]) == 4
        assert call("GET", "/releases", "prod-reader").json()["releases"] == []    # a prod token sees no stg
    finally:
        stop_process(proc, timeout=30)


@pytest.fixture(scope="module")
def promo_ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("groups-promote")
    workspace = create_group_workspace(root, {s: free_port() for s in SERVICES}, instances=1)
    yield workspace
    stop_agent(workspace.root / ".shipyard" / "agent", stop_instances=True)
    deadline = time.monotonic() + 10
    while app_processes(workspace.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in app_processes(workspace.root):
        os.kill(pid, signal.SIGKILL)


def test_promote_with_release_then_a_failed_release_leaves_the_env_frozen(promo_ws: GroupWorkspace) -> None:
    ws = promo_ws
    for svc in SERVICES:
        commit(ws, svc, "6.0.0", branch="dev")
    good = cli(ws.root, "promote", "dev", "stg", "--release", "platform", "--yes", "--json", timeout=300)
    assert good.returncode == 0, good.stderr[-2000:]
    done = json.loads(good.stdout)
    assert done["release"]["state"] == "succeeded"
    tags = {r["repo"]: r["tag"] for r in done["outcome"]["repos"]}
    # Each member went out from its repo's new tag, and the release names the promotion it follows.
    assert {m["service"]: m["ref"] for m in done["release"]["members"]} == tags and all(tags.values())
    shown = json.loads(cli(ws.root, "show", done["release"]["id"], "--json").stdout)["release"]
    assert shown["promotion_id"] == done["outcome"]["id"]
    assert_serving(ws, "6.0.0")

    for svc in SERVICES[:3]:
        commit(ws, svc, "7.0.0", branch="dev")
    commit(ws, "user-web", "7.0.0", health_fail=True, branch="dev")
    bad = cli(ws.root, "promote", "dev", "stg", "--release", "platform", "--yes", "--json", timeout=300)
    assert bad.returncode == 1, bad.stderr[-2000:]
    assert "stg is frozen" in bad.stderr and bad.stderr.count("\n") == 1, bad.stderr
    assert json.loads(bad.stdout)["release"]["state"] == "rolled_back"
    assert_serving(ws, "6.0.0")
    # Frozen at the previous tags: the branch tip (7.0.0) is not deployed, not even by a plain deploy.
    plain = cli(ws.root, "deploy", "api", "--env", "stg")
    assert plain.returncode == 1 and "frozen" in plain.stderr, plain.stderr
    again = cli(ws.root, "promote", "dev", "stg", "--release", "platform", "--yes")
    assert again.returncode != 0 and "frozen" in again.stderr, again.stderr
    assert_serving(ws, "6.0.0")
    unknown = cli(ws.root, "promote", "dev", "stg", "--release", "nope", "--yes")
    assert unknown.returncode == 2 and "unknown release group 'nope'" in unknown.stderr


@pytest.fixture(scope="module")
def gated_ws(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("groups-lease")
    gate = root / "GATE"
    # user-web's hook waits (bounded) for the test to open the gate: the group holds every lease meanwhile.
    hook = f"for i in $(seq 1200); do [ -e {gate} ] && exit 0; sleep 0.1; done; exit 1"
    workspace = create_group_workspace(root, {s: free_port() for s in SERVICES}, instances=1,
                                       hooks={"user-web": {"after_install": hook}})
    yield workspace, gate
    gate.touch()
    stop_agent(workspace.root / ".shipyard" / "agent", stop_instances=True)
    deadline = time.monotonic() + 10
    while app_processes(workspace.root) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in app_processes(workspace.root):
        os.kill(pid, signal.SIGKILL)


def test_a_plain_deploy_of_a_member_queues_behind_the_group(gated_ws: tuple[GroupWorkspace, Path]) -> None:
    ws, gate = gated_ws
    gate.touch()
    assert release(ws).returncode == 0
    gate.unlink()
    for svc in SERVICES:
        commit(ws, svc, "2.0.0")
    group = subprocess.Popen(cli_argv("release", "platform", "--env", "stg", "--json"), cwd=ws.root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    queued: subprocess.Popen[str] | None = None
    try:
        def in_last_wave() -> bool:
            assert group.poll() is None, group.communicate()
            with store(ws) as st, st.session() as s:
                runs = gq.list_groups(s, limit=1)
                return bool(runs) and runs[0].state == "in_progress" and any(
                    m.service == "user-web" and m.deployment_id for m in gq.members(s, runs[0].id))
        wait_until(in_last_wave, 120, "the group to reach user-web's gated hook")
        with store(ws) as st, st.session() as s:
            gid = gq.list_groups(s, limit=1)[0].id
        # api's own deploy finished long ago, but the group still holds its lease: --no-wait names the group.
        busy = cli(ws.root, "deploy", "api", "--env", "stg", "--no-wait")
        assert busy.returncode == 1 and gid in busy.stderr, busy.stderr
        queued = subprocess.Popen(cli_argv("deploy", "api", "--env", "stg", "--json"), cwd=ws.root,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def waiting() -> bool:
            assert queued is not None and queued.poll() is None, queued.communicate() if queued else None
            with store(ws) as st, st.session() as s:
                return any(q.service == "api" for q in s.query(QueueEntry).all())
        wait_until(waiting, 60, "the plain deploy of api to queue behind the group")
        gate.touch()
        out, err = group.communicate(timeout=240)
        assert group.returncode == 0 and json.loads(out)["state"] == "succeeded", err[-2000:]
        out, err = queued.communicate(timeout=240)
        assert queued.returncode == 0, err[-2000:]
        with store(ws) as st, st.session() as s:
            ended = gq.get_group(s, gid)
            plain = dq.get_deployment(s, json.loads(out)["id"])
            assert ended is not None and plain is not None and ended.finished_at is not None
            assert plain.started_at is not None and plain.started_at >= ended.finished_at
    finally:
        gate.touch()
        for proc in (group, queued):
            if proc is not None and proc.poll() is None:
                stop_process(proc, timeout=30)
