"""A CI runner's view: with only a token it deploys and rolls back through `shipyard serve` (the same engine
the CLI runs), follows the deployment's event stream to its end, and is refused outside its scope or env;
it sees status, cancels a queued deploy (waiting in the server or in a CLI), is refused at once with
--no-wait, recovers a dead run; it rolls every repo back to a tag, and an admin token goes through the
freeze that leaves (with a reason and --set values) and lifts it."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.demo.workspace import commit_version
from shipyard.store import Store, create_deployment

from .conftest import E2E, Background, Result, assert_ok, get_version, run_cli, start_serve, stop_serve, wait_until
from .test_cli_deploy import _add_hooks


@pytest.fixture
def served(new_workspace) -> Iterator[tuple[E2E, str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    with serving(e2e) as (url, tokens):
        yield e2e, url, tokens


@contextlib.contextmanager
def serving(e2e: E2E) -> Iterator[tuple[str, dict[str, str]]]:
    """`shipyard serve` on the workspace (its config as it is now), with a stg deployer and a reader."""
    tokens = {}
    for name, scopes, env in (("ci-stg", "deploy,read", "stg"), ("reader", "read", None)):
        made = assert_ok(e2e.cli("tokens", "create", "--name", name, "--scopes", scopes,
                                 *(("--env", env) if env else ()), "--json"))
        tokens[name] = json.loads(made.stdout)["token"]
    server, url = start_serve(e2e)
    try:
        yield url, tokens
    finally:
        stop_serve(server)


def follow(url: str, token: str, path: str) -> list[str]:
    kinds = []
    with httpx.stream("GET", f"{url}{path}", headers={"Authorization": f"Bearer {token}"},
                      timeout=httpx.Timeout(180.0)) as res:
        assert res.status_code == 200, res.read()
        for line in res.iter_lines():
            if line.startswith("event: "):
                kinds.append(line.removeprefix("event: "))
                if kinds[-1] == "end":
                    return kinds
    return kinds


def test_deploy_and_rollback_through_the_api(served: tuple[E2E, str, dict[str, str]]) -> None:
    e2e, url, tokens = served
    auth = {"Authorization": f"Bearer {tokens['ci-stg']}"}
    res = httpx.post(f"{url}/api/v1/deployments", json={"service": "api", "env": "stg"}, headers=auth, timeout=120)
    assert res.status_code == 202, res.text
    first = res.json()
    kinds = follow(url, tokens["ci-stg"], first["events"])
    assert kinds[0] == "deploy.queued" and "deploy.succeeded" in kinds and kinds[-1] == "end", kinds
    shown = httpx.get(f"{url}{first['url']}", headers=auth, timeout=10).json()
    assert (shown["state"], shown["actor"]) == ("succeeded", "ci-stg")
    v1 = get_version(e2e.api_port)["version"]

    commit_version(e2e.ws, "api", "2.0.0")
    second = httpx.post(f"{url}/api/v1/deployments", json={"service": "api", "env": "stg"}, headers=auth,
                        timeout=120).json()
    assert follow(url, tokens["ci-stg"], second["events"])[-1] == "end"
    assert get_version(e2e.api_port)["version"] == "2.0.0"
    back = httpx.post(f"{url}/api/v1/rollbacks", json={"service": "api", "env": "stg"}, headers=auth, timeout=120)
    assert back.status_code == 202, back.text
    assert follow(url, tokens["ci-stg"], back.json()["events"])[-1] == "end"
    assert get_version(e2e.api_port)["version"] == v1
    rows = {r["id"]: r for r in e2e.deployments()}
    assert rows[back.json()["id"]]["kind"] == "rollback" and rows[back.json()["id"]]["actor"] == "ci-stg"

    # Refusals: another env, a read-only token, an unknown service, a malformed body. Nothing is recorded.
    before = len(e2e.deployments())
    for token, body, status in ((tokens["ci-stg"], {"service": "api", "env": "prod"}, 403),
                                (tokens["reader"], {"service": "api", "env": "stg"}, 403),
                                (tokens["ci-stg"], {"service": "nope", "env": "stg"}, 400),
                                (tokens["ci-stg"], {"service": "api"}, 422)):
        res = httpx.post(f"{url}/api/v1/deployments", json=body, headers={"Authorization": f"Bearer {token}"},
                         timeout=30)
        assert res.status_code == status, (body, res.text)
        assert set(res.json()) == {"error"}
    assert len(e2e.deployments()) == before


def test_the_cli_through_the_server(served: tuple[E2E, str, dict[str, str]], tmp_path: Path) -> None:
    """A CI runner with no project and no database: only SHIPYARD_SERVER and SHIPYARD_TOKEN."""
    e2e, url, tokens = served
    runner = tmp_path / "runner"
    runner.mkdir()
    env = {k: v for k, v in e2e.env.items() if k != "SHIPYARD_SERVER"}
    env.update(SHIPYARD_TOKEN=tokens["ci-stg"])

    def cli(*args: str) -> Result:
        return run_cli(runner, "--server", url, *args, env=env, timeout=240)

    deployed = cli("deploy", "api", "--env", "stg", "--json")
    assert deployed.returncode == 0, str(deployed)
    summary = json.loads(deployed.stdout)
    assert summary["state"] == "succeeded" and summary["id"]
    history = json.loads(assert_ok(cli("history", "--json")).stdout)["deployments"]
    assert history[0]["id"] == summary["id"] and history[0]["actor"] == "ci-stg"
    shown = json.loads(assert_ok(cli("show", summary["id"], "--json")).stdout)
    assert shown["deployment"]["state"] == "succeeded" and shown["steps"]
    # status through the server: the same JSON as the local command, and the same table.
    remote_status = json.loads(assert_ok(cli("status", "--env", "stg", "--json")).stdout)
    local_status = assert_ok(e2e.cli("status", "--env", "stg", "--json")).json()
    assert _steady(remote_status) == _steady(local_status), (remote_status, local_status)
    row = next(r for r in remote_status["status"] if r["service"] == "api")
    assert row["serving_deployment"]["id"] == summary["id"] and row["instances"]
    assert all(i["traffic_percent"] >= 0 for i in row["instances"]) and remote_status["agent"] is True
    table = assert_ok(cli("status", "--env", "stg")).stdout
    assert table == assert_ok(e2e.cli("status", "--env", "stg")).stdout
    assert "api/stg  serving" in table
    live = cli("deploy", "api", "--env", "stg")             # the live display, fed by the event stream
    assert live.returncode == 0 and "succeeded" in live.stdout, str(live)
    assert not (runner / ".shipyard").exists()              # nothing local: no store, no agent

    for args, code, text in ((("deploy", "api", "--env", "prod"), 1, "bound to stg"),
                             (("show", "nope"), 2, "no deployment"),
                             (("status", "--env", "prod"), 1, "bound to stg"),
                             (("promote", "dev", "stg"), 2, "--yes"),
                             (("deploy", "api", "--env", "stg", "--set", "A-B=1"), 2, "invalid environment variable"),
                             (("deploy", "api", "--env", "stg", "--reason", "x"), 2, "--override-freeze")):
        res = cli(*args)
        assert res.returncode == code and text in res.stderr and len(res.error_lines) == 1, str(res)
    no_token = run_cli(runner, "--server", url, "history", env={k: v for k, v in env.items()
                                                                 if k != "SHIPYARD_TOKEN"}, timeout=60)
    assert no_token.returncode == 2 and "SHIPYARD_TOKEN" in no_token.stderr
    down = run_cli(runner, "--server", "http://127.0.0.1:9", "history", env=env, timeout=60)
    assert down.returncode == 1 and "cannot reach the shipyard server" in down.stderr

    # The server's agent down: status still answers (200) from the store, the live part marked unavailable;
    # the CLI shows it and exits 1, as locally.
    assert_ok(e2e.cli("agent", "stop"))
    res = httpx.get(f"{url}/api/v1/status", params={"env": "stg"}, timeout=30,
                    headers={"Authorization": f"Bearer {tokens['ci-stg']}"})
    assert res.status_code == 200 and res.json()["agent"] is False, res.text
    row = next(r for r in res.json()["status"] if r["service"] == "api")
    assert row["instances"] == [] and row["serving_deployment"]["id"] and row["agent"] is False
    agent_down = cli("status", "--env", "stg", "--json")
    assert agent_down.returncode == 1 and json.loads(agent_down.stdout)["agent"] is False, str(agent_down)
    assert "the agent is not running" in cli("status", "--env", "stg").stderr


def _steady(status: dict[str, Any]) -> dict[str, Any]:
    """A status answer without what changes between two calls (ages)."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "age_seconds"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    return dict(strip(status))


def test_cancel_a_queued_deploy_and_recover_through_the_api(new_workspace) -> None:  # type: ignore[no-untyped-def]
    """A CLI deploy holds the lease (its hook waits on a gate file); one deploy queued through the API (its
    run waits in the server) and one queued by another CLI are cancelled through the API: their rows close
    as cancelled by the token, their runs end without a step, the first finishes untouched."""
    e2e: E2E = new_workspace()
    gate = e2e.root / "gate"
    e2e.edit_config(lambda t: _add_hooks(
        t, '{before_install: "until [ -e ${E2E_HOOK_GATE:-/} ]; do sleep 0.05; done"}'))
    with serving(e2e) as (url, tokens):
        auth = {"Authorization": f"Bearer {tokens['ci-stg']}"}

        def post(path: str, body: dict[str, Any], token: str = tokens["ci-stg"]) -> httpx.Response:
            return httpx.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)

        def queue() -> list[str]:
            res = httpx.get(f"{url}/api/v1/status", params={"env": "stg", "service": "api"}, headers=auth,
                            timeout=30)
            assert res.status_code == 200, res.text
            return [q["deployment"] for q in res.json()["status"][0]["queue"]]

        first = e2e.background("deploy", "api", "--env", "stg", E2E_HOOK_GATE=str(gate))
        cli_waiter: Background | None = None
        try:
            first.wait_for_line(r"step 1: hook before_install")
            accepted = post("/api/v1/deployments", {"service": "api", "env": "stg"})
            assert accepted.status_code == 202, accepted.text
            in_server = accepted.json()["id"]
            wait_until(lambda: queue() == [in_server], 60, "the API's deploy to queue")
            # --no-wait while the lease is held: refused at once (409; through --server, exit 1, one line),
            # its record closed as cancelled, nothing queued.
            busy = post("/api/v1/deployments", {"service": "api", "env": "stg", "no_wait": True})
            assert busy.status_code == 409 and "being deployed by" in busy.json()["error"], busy.text
            no_wait = run_cli(e2e.root, "--server", url, "deploy", "api", "--env", "stg", "--no-wait",
                              env={**{k: v for k, v in e2e.env.items() if k != "SHIPYARD_SERVER"},
                                   "SHIPYARD_TOKEN": tokens["ci-stg"]}, timeout=60)
            assert no_wait.returncode == 1 and "drop --no-wait" in no_wait.stderr, str(no_wait)
            assert len(no_wait.error_lines) == 1 and queue() == [in_server]
            assert e2e.deployments()[0]["state"] == "cancelled"
            cli_waiter = e2e.background("deploy", "api", "--env", "stg")
            cli_waiter.wait_for_line(r"deploy\.waiting", 60)
            wait_until(lambda: len(queue()) == 2, 60, "the CLI's deploy to queue")
            in_cli_id = queue()[1]

            status = httpx.get(f"{url}/api/v1/status", params={"env": "stg"}, headers=auth, timeout=30).json()
            row = next(r for r in status["status"] if r["service"] == "api")
            running = row["lease"]["deployment"]
            assert row["queue"][0]["position"] == 0 and running not in (in_server, in_cli_id)

            refused = post(f"/api/v1/deployments/{running}/cancel", {})
            assert refused.status_code == 409 and "rollback" in refused.json()["error"], refused.text
            assert post(f"/api/v1/deployments/{in_server}/cancel", {}, tokens["reader"]).status_code == 403
            assert post("/api/v1/deployments/deploy-nope/cancel", {}).status_code == 404
            done = post(f"/api/v1/deployments/{in_server}/cancel", {"reason": "superseded"})
            assert done.status_code == 200, done.text
            assert (done.json()["state"], done.json()["actor"]) == ("cancelled", "ci-stg")
            again = post(f"/api/v1/deployments/{in_server}/cancel", {})
            assert again.status_code == 409 and "already finished" in again.json()["error"], again.text
            # The CLI waiter, cancelled by `shipyard --server ... cancel`, ends at once with one line.
            env = {k: v for k, v in e2e.env.items() if k != "SHIPYARD_SERVER"}
            by_cli = run_cli(e2e.root, "--server", url, "cancel", in_cli_id, "--json",
                             env={**env, "SHIPYARD_TOKEN": tokens["ci-stg"]}, timeout=60)
            assert json.loads(assert_ok(by_cli).stdout)["state"] == "cancelled"
            waited = cli_waiter.finish(timeout=60)
            assert waited.returncode == 1 and "cancelled by ci-stg" in waited.stderr, str(waited)
            assert queue() == []
        finally:
            gate.touch()
            if cli_waiter is not None:
                cli_waiter.kill()
            res1 = first.finish()
        assert_ok(res1)

        rows = {r["id"]: r for r in e2e.deployments()}
        assert rows[running]["state"] == "succeeded", rows[running]
        assert rows[in_server]["reason"] == "cancelled by ci-stg: superseded"
        assert rows[in_cli_id]["reason"] == "cancelled by ci-stg"
        for dep_id in (in_server, in_cli_id):
            shown = httpx.get(f"{url}/api/v1/deployments/{dep_id}", headers=auth, timeout=10).json()
            assert shown["state"] == "cancelled" and shown["steps"] == [] and shown["started_at"] is None
            kinds = [e["kind"] for e in shown["events"]]
            assert "deploy.cancelled" in kinds and "deploy.started" not in kinds, kinds
            cancelled = next(e for e in shown["events"] if e["kind"] == "deploy.cancelled")
            assert cancelled["data"]["actor"] == "ci-stg"

        # Recover: a run left queued by a dead process is closed, with the token as the actor.
        with Store.open(f"sqlite:///{e2e.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
            create_deployment(s, service="api", env="stg", revision="f" * 40, strategy="rolling", actor="ci",
                              owner=f"{socket.gethostname()}:999999999:1", deployment_id="deploy-dead")
        assert post("/api/v1/recover", {}).status_code == 403          # every env needs admin
        recovered = post("/api/v1/recover", {"env": "stg"})
        assert recovered.status_code == 200, recovered.text
        assert [(r["id"], r["state"]) for r in recovered.json()["recovered"]] == [("deploy-dead", "cancelled")]
        assert post("/api/v1/recover", {"env": "stg"}).json() == {"recovered": []}


def test_tag_rollback_freeze_override_and_unfreeze_through_the_server(new_workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A CI runner with a stg token promotes twice and rolls stg back to the first tag (every repo's branch;
    stg frozen), all through `--server`. A plain deploy is then refused; going through the freeze needs an
    admin token and a reason (recorded with the token's name), and carries a --set value to the instances;
    the admin token lifts the freeze and deploys run again."""
    e2e: E2E = new_workspace()
    # No auto_deploy: the daemon's GitOps watcher stays out of it (each step below is the runner's own).
    e2e.edit_config(lambda t: t.replace("dev:  {branch: dev, auto_deploy: true}", "dev:  {branch: dev}")
                    .replace('tag: "stg-deploy-{ts}", auto_deploy: true', 'tag: "stg-deploy-{ts}"'))
    lead = json.loads(assert_ok(e2e.cli("tokens", "create", "--name", "lead-stg", "--scopes", "admin", "--env", "stg",
                                        "--json")).stdout)["token"]
    runner = tmp_path / "runner"
    runner.mkdir()
    with serving(e2e) as (url, tokens):
        env = {k: v for k, v in e2e.env.items() if k != "SHIPYARD_SERVER"}

        def cli(*args: str, token: str = tokens["ci-stg"]) -> Result:
            res = run_cli(runner, "--server", url, *args, env={**env, "SHIPYARD_TOKEN": token}, timeout=240)
            assert "Traceback" not in res.stderr, str(res)
            return res

        tags = []
        for version in ("1.1.0", "1.2.0"):
            commit_version(e2e.ws, "api", version, branch="dev")
            done = json.loads(assert_ok(cli("promote", "dev", "stg", "--yes", "--json")).stdout)
            tags.append(next(r["tag"] for r in done["outcome"]["repos"] if r["repo"] == "api"))
        plan = json.loads(assert_ok(cli("rollback", "--env", "stg", "--to", tags[0], "--dry-run", "--json")).stdout)
        assert plan["plan"]["kind"] == "rollback" and {r["repo"] for r in plan["plan"]["repos"]} == {"api", "web"}
        back = cli("rollback", "--env", "stg", "--to", tags[0], "--yes")
        assert back.returncode == 0 and "completed" in back.stdout, str(back)
        rb = json.loads(assert_ok(cli("history", "--promotions", "--json")).stdout)["promotions"][0]
        assert (rb["kind"], rb["actor"], rb["rollback_to"]) == ("rollback", "ci-stg", tags[0]), rb

        # Frozen: a deploy and a promotion are refused, one line each; the stg token cannot lift it.
        refused = cli("deploy", "api", "--env", "stg")
        assert refused.returncode == 1 and f"stg is frozen by {rb['id']}" in refused.stderr, str(refused)
        assert len(refused.error_lines) == 1
        override = ("deploy", "api", "--env", "stg", "--override-freeze", "--reason", "check the revert")
        for args, code, text in ((override, 1, "'admin' scope to override a freeze of stg"),
                                 (("unfreeze", "--env", "stg"), 1, "'admin' scope to unfreeze stg"),
                                 (("promote", "dev", "stg", "--yes"), 1, f"stg is frozen by {rb['id']}"),
                                 (("rollback", "--env", "stg", "--to", tags[0], "--keep-partial", "--yes"), 2,
                                  "--keep-partial"),
                                 (("deploy", "api", "--env", "stg", "--override-freeze"), 2, "--reason")):
            res = cli(*args)
            assert res.returncode == code and text in res.stderr and len(res.error_lines) == 1, (args, str(res))

        # The admin token goes through the freeze: recorded, and the --set value reaches the instances.
        through = cli("deploy", "api", "--env", "stg", "--override-freeze", "--reason", "check the revert",
                      "--set", "ERROR_RATE=0.001", "--json", token=lead)
        assert through.returncode == 0, str(through)
        dep_id = json.loads(through.stdout)["id"]
        assert get_version(e2e.api_port)["version"] == "1.1.0"             # the first tag's tree, reverted to
        assert httpx.get(f"http://127.0.0.1:{e2e.api_port}/admin/error-rate", timeout=10).json() == \
            {"error_rate": 0.001}
        shown = httpx.get(f"{url}/api/v1/deployments/{dep_id}", headers={"Authorization": f"Bearer {lead}"},
                          timeout=10).json()
        assert shown["actor"] == "lead-stg"
        overridden = next(e for e in shown["events"] if e["kind"] == "deploy.freeze_overridden")
        assert (overridden["data"]["actor"], overridden["data"]["reason"]) == ("lead-stg", "check the revert")
        assert overridden["data"]["frozen_by"] == rb["id"]

        lifted = cli("unfreeze", "--env", "stg", "--json", token=lead)
        assert json.loads(assert_ok(lifted).stdout) == {"env": "stg", "lifted": [rb["id"]]}
        assert "stg was not frozen" in assert_ok(cli("unfreeze", "--env", "stg", token=lead)).stdout
        again = cli("deploy", "api", "--env", "stg", "--json")                 # no --set: the configured rate
        assert again.returncode == 0, str(again)
        assert httpx.get(f"http://127.0.0.1:{e2e.api_port}/admin/error-rate", timeout=10).json() == \
            {"error_rate": 0.0}
