"""A CI runner's view: with only a token it deploys and rolls back through `shipyard serve` (the same engine
the CLI runs), follows the deployment's event stream to its end, and is refused outside its scope or env."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import httpx
import pytest

from shipyard.demo.workspace import commit_version
from shipyard.testing.receivers import free_port

from .conftest import E2E, Background, assert_ok, get_version, wait_until


@pytest.fixture
def served(new_workspace) -> Iterator[tuple[E2E, str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    tokens = {}
    for name, scopes, env in (("ci-stg", "deploy,read", "stg"), ("reader", "read", None)):
        made = assert_ok(e2e.cli("tokens", "create", "--name", name, "--scopes", scopes,
                                 *(("--env", env) if env else ()), "--json"))
        tokens[name] = json.loads(made.stdout)["token"]
    port = free_port()
    server = Background(e2e.root, "serve", "--listen", f"127.0.0.1:{port}", env=e2e.env)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert server.proc.poll() is None, "".join(server.err)
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_until(up, 60, "shipyard serve")
        yield e2e, url, tokens
    finally:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
        res = server.finish(timeout=150)
        assert res.returncode == 0, str(res)


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
