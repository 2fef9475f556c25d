"""POST /api/v1/promotions against real git repos with bare remotes, through a real `shipyard serve`: the
plan of a dry run, a promotion recorded with the token's name as its actor, the CLI's errors as 4xx
answers, and `shipyard --server ... history --promotions` printing what the local command prints."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fleet_helpers import Fleet, cli_env, git, make_fleet, run_cli

from shipyard.testing.cli import cli_argv
from shipyard.testing.processes import server_process
from shipyard.testing.receivers import free_port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, str, dict[str, str]]]:
    fleet = make_fleet(tmp_path_factory.mktemp("promote") / "f", 2)
    tokens = {}
    for name, scopes, env in (("ci-stg", "deploy,read", "stg"), ("ci", "deploy,read", None)):
        made = run_cli(fleet.root, "tokens", "create", "--name", name, "--scopes", scopes,
                       *(("--env", env) if env else ()), "--json")
        assert made.returncode == 0, str(made)
        tokens[name] = made.json()["token"]
    url = f"http://127.0.0.1:{free_port()}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def exited(proc: subprocess.Popen[bytes]) -> AssertionError:
        return AssertionError(f"shipyard serve exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")

    with server_process(cli_argv("serve", "--listen", url.removeprefix("http://")), ready=up, exited=exited,
                        timeout=30, what="shipyard serve to answer", cwd=fleet.root, env=cli_env(),
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE):
        yield fleet, url, tokens

AGO = re.compile(r"\d+[smhd] ago")


def promote(url: str, token: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/promotions", json=body, headers={"Authorization": f"Bearer {token}"},
                      timeout=60)


def test_promote_through_the_api(served: tuple[Fleet, str, dict[str, str]], tmp_path: Path) -> None:
    fleet, url, tokens = served
    new = fleet.commit("svc0", "dev", {"app.txt": "v2\n"}, "v2")
    before = fleet.remote_state()

    plan = promote(url, tokens["ci-stg"], source="dev", target="stg", dry_run=True)
    assert plan.status_code == 200, plan.text
    actions = {r["repo"]: r["action"] for r in plan.json()["plan"]["repos"]}
    assert actions["svc0"] == "update", actions
    assert plan.json()["outcome"] is None and fleet.remote_state() == before      # a dry run pushes nothing

    done = promote(url, tokens["ci-stg"], source="dev", target="stg", message="ship v2")
    assert done.status_code == 200, done.text
    outcome = done.json()["outcome"]
    assert outcome["state"] == "completed" and outcome["changed"] == {"stg": {"svc0": fleet.sha("svc0", "stg")}}
    assert fleet.tree("svc0", "refs/heads/stg") == fleet.tree("svc0", new)        # stg now has dev's v2
    assert fleet.sha("svc1", "stg") == before["svc1"]["refs/heads/stg"]
    record = httpx.get(f"{url}/api/v1/promotions/{outcome['id']}", timeout=10,
                       headers={"Authorization": f"Bearer {tokens['ci-stg']}"}).json()
    assert (record["actor"], record["state"], record["message"]) == ("ci-stg", "completed", "ship v2")

    # The CLI's refusals, as one-line 4xx answers; nothing pushed by any of them.
    after = fleet.remote_state()
    for token, body, status, text in (
            (tokens["ci-stg"], {"source": "dev", "target": "stg"}, 409, "nothing to promote"),
            (tokens["ci-stg"], {"source": "stg", "target": "prod"}, 403, "bound to stg"),
            (tokens["ci"], {"source": "qa", "target": "stg"}, 400, "qa"),
            (tokens["ci"], {"source": "stg", "target": "prod"}, 400, "confirm: twice"),
            (tokens["ci"], {"source": "dev", "target": "stg", "only": ["nope"]}, 400, "nope")):
        res = promote(url, token, **body)
        assert res.status_code == status and text in res.json()["error"], (body, res.text)
        assert set(res.json()) == {"error"} and "\n" not in res.json()["error"]
    assert fleet.remote_state() == after
    confirmed = promote(url, tokens["ci"], source="stg", target="prod", confirm="prod")
    assert confirmed.status_code == 200 and confirmed.json()["outcome"]["state"] == "completed", confirmed.text
    assert fleet.tree("svc0", "refs/heads/main") == fleet.tree("svc0", new)

    # history --promotions through the server prints what the local command prints (JSON and table).
    runner = tmp_path / "runner"
    runner.mkdir()
    remote_env = {"SHIPYARD_SERVER": url, "SHIPYARD_TOKEN": tokens["ci"]}
    for args in (("history", "--promotions", "--json"), ("history", "--promotions")):
        local = run_cli(fleet.root, *args)
        through = run_cli(runner, *args, **remote_env)
        assert local.returncode == through.returncode == 0, (str(local), str(through))
        assert AGO.sub("ago", through.stdout).split() == AGO.sub("ago", local.stdout).split()  # 5s may be 6s
    listed = json.loads(run_cli(runner, "history", "--promotions", "--json", **remote_env).stdout)["promotions"]
    assert [(p["actor"], p["target_env"]) for p in listed] == [("ci", "prod"), ("ci-stg", "stg")]

    # `shipyard --server ... promote`: the plan as the local --dry-run --json shows it, then the push.
    fleet.commit("svc1", "dev", {"app.txt": "v3\n"}, "v3")
    stg_env = {**remote_env, "SHIPYARD_TOKEN": tokens["ci-stg"]}
    local_plan = run_cli(fleet.root, "promote", "dev", "stg", "--dry-run", "--json")
    remote_plan = run_cli(runner, "promote", "dev", "stg", "--dry-run", "--json", **stg_env)
    assert local_plan.returncode == remote_plan.returncode == 0, (str(local_plan), str(remote_plan))
    assert set(remote_plan.json()) == set(local_plan.json()) == {"plan", "problems"}
    assert remote_plan.json()["plan"]["repos"] == local_plan.json()["plan"]["repos"]
    unconfirmed = run_cli(runner, "promote", "dev", "stg", **stg_env)
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr, str(unconfirmed)
    pushed = run_cli(runner, "promote", "dev", "stg", "--yes", "-m", "v3 to stg", **stg_env)
    assert pushed.returncode == 0 and "completed: 1 pushed, 1 skipped" in pushed.stdout, str(pushed)
    assert fleet.tree("svc1", "refs/heads/stg") == fleet.tree("svc1", "refs/heads/dev")
    newest = json.loads(run_cli(runner, "history", "--promotions", "--json", **stg_env).stdout)["promotions"][0]
    assert (newest["actor"], newest["message"], newest["state"]) == ("ci-stg", "v3 to stg", "completed")


def test_hotfix_sync_through_the_api_and_the_cli(served: tuple[Fleet, str, dict[str, str]], tmp_path: Path) -> None:
    """`shipyard --server ... hotfix sync`: prod's fix merged back into stg and dev by the server, recorded
    with the token's name; a token bound to stg cannot (the sync also writes dev); nothing left: 409."""
    fleet, url, tokens = served
    fix = fleet.commit("svc0", "main", {"fix.txt": "the hotfix\n"}, "hotfix: timeout")
    runner = tmp_path / "runner"
    runner.mkdir()
    remote_env = {"SHIPYARD_SERVER": url, "SHIPYARD_TOKEN": tokens["ci"]}
    before = fleet.remote_state()

    bound = httpx.post(f"{url}/api/v1/hotfix-syncs", json={}, headers={"Authorization": f"Bearer {tokens['ci-stg']}"},
                       timeout=60)
    assert bound.status_code == 403 and "not 'dev'" in bound.json()["error"], bound.text
    plan = run_cli(runner, "hotfix", "sync", "--dry-run", "--json", **remote_env)
    assert plan.returncode == 0, str(plan)
    assert plan.json()["plan"]["kind"] == "hotfix" and plan.json()["plan"]["target_env"] == "stg"
    actions = {r["repo"]: r["action"] for r in plan.json()["plan"]["repos"]}
    assert actions["svc0"] == "update", actions
    for args, text in ((("hotfix", "sync"), "--yes"),
                       (("hotfix", "sync", "--yes", "--keep-partial"), "--keep-partial")):
        res = run_cli(runner, *args, **remote_env)
        assert res.returncode == 2 and text in res.stderr and len(res.error_lines) == 1, str(res)
    assert fleet.remote_state() == before                                  # nothing pushed so far

    synced = run_cli(runner, "hotfix", "sync", "--yes", "-m", "back-merge the timeout fix", **remote_env)
    pushed = sum(a == "update" for a in actions.values())
    assert synced.returncode == 0 and f"completed: {pushed} pushed" in synced.stdout, str(synced)
    for branch in ("stg", "dev"):
        assert git(fleet.origins["svc0"], "merge-base", "--is-ancestor", fix, fleet.sha("svc0", branch)) == ""
    newest = json.loads(run_cli(runner, "history", "--promotions", "--json", **remote_env).stdout)["promotions"][0]
    assert (newest["kind"], newest["actor"], newest["state"]) == ("hotfix", "ci", "completed")
    again = run_cli(runner, "hotfix", "sync", "--yes", **remote_env)
    assert again.returncode == 1 and "nothing to hotfix" in again.stderr and len(again.error_lines) == 1, str(again)
    synced_state = fleet.remote_state()
    unknown = httpx.post(f"{url}/api/v1/tag-rollbacks", json={"env": "stg", "to": "stg-deploy-19990101-000000"},
                         headers={"Authorization": f"Bearer {tokens['ci-stg']}"}, timeout=60)
    assert unknown.status_code == 400 and "no tag 'stg-deploy-19990101-000000'" in unknown.json()["error"], unknown.text
    assert fleet.remote_state() == synced_state
