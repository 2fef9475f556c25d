"""A CI runner's view: with only a token it deploys and rolls back through `shipyard serve` (the same engine
the CLI runs), follows the deployment's event stream to its end, and is refused outside its scope or env."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shipyard.demo.workspace import commit_version

from .conftest import E2E, Result, assert_ok, get_version, run_cli, start_serve, stop_serve


@pytest.fixture
def served(new_workspace) -> Iterator[tuple[E2E, str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    tokens = {}
    for name, scopes, env in (("ci-stg", "deploy,read", "stg"), ("reader", "read", None)):
        made = assert_ok(e2e.cli("tokens", "create", "--name", name, "--scopes", scopes,
                                 *(("--env", env) if env else ()), "--json"))
        tokens[name] = json.loads(made.stdout)["token"]
    server, url = start_serve(e2e)
    try:
        yield e2e, url, tokens
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
    live = cli("deploy", "api", "--env", "stg")             # the live display, fed by the event stream
    assert live.returncode == 0 and "succeeded" in live.stdout, str(live)
    assert not (runner / ".shipyard").exists()              # nothing local: no store, no agent

    for args, code, text in ((("deploy", "api", "--env", "prod"), 1, "bound to stg"),
                             (("show", "nope"), 2, "no deployment"),
                             (("status",), 2, "does not go through --server"),
                             (("deploy", "api", "--env", "stg", "--no-wait"), 2, "--no-wait")):
        res = cli(*args)
        assert res.returncode == code and text in res.stderr and len(res.error_lines) == 1, str(res)
    no_token = run_cli(runner, "--server", url, "history", env={k: v for k, v in env.items()
                                                                 if k != "SHIPYARD_TOKEN"}, timeout=60)
    assert no_token.returncode == 2 and "SHIPYARD_TOKEN" in no_token.stderr
    down = run_cli(runner, "--server", "http://127.0.0.1:9", "history", env=env, timeout=60)
    assert down.returncode == 1 and "cannot reach the shipyard server" in down.stderr
