"""GitOps through a real `shipyard serve` (gitops_interval 1s) over real git repos with bare remotes: the
first poll records a baseline, a push is deployed once (a real deploy through the agent), the poller and a
webhook for one sha still make one deployment, GitHub signatures and GitLab tokens are checked, a replayed
delivery is refused, and a frozen env refuses (recorded) without a second attempt."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.demo.workspace import Workspace, commit_version, create_workspace
from shipyard.store import Store
from shipyard.store import events as eq
from shipyard.store import git_triggers as gq
from shipyard.store.models import Deployment, GitTip
from shipyard.testing.cli import cli_argv, run_cli
from shipyard.testing.processes import stop_process, wait_ready
from shipyard.testing.receivers import free_port
from shipyard.testing.wait import wait_until

pytestmark = pytest.mark.timeout(240)
GH_SECRET, GL_TOKEN = "gh-" + uuid.uuid4().hex, "gl-" + uuid.uuid4().hex
CONFIG = """\
project: demo
state: {state}
secrets: {{provider: env, env_prefix: GITOPS_TEST_}}
repos:
  api: {{url: {url}, path: {path}}}
environments:
  dev: {{branch: dev, auto_deploy: true}}
  stg: {{branch: stg, auto_deploy: true, frozen: true}}
  prod: {{branch: main}}
services:
  api:
    repo: api
    run: {run}
    health: {{type: http, path: /health, interval: 0.1s, timeout: 1s, healthy_threshold: 1, start_period: 5s}}
    deploy:
      target: {{type: local, instances: 1}}
      router: {{type: builtin, listen: "127.0.0.1:{port}"}}
      strategy: {{type: all_at_once}}
      bake: 0s
serve:
  gitops_interval: 1s
  webhooks: {{github_secret: "${{secret:GH_HOOK}}", gitlab_token: "${{secret:GL_HOOK}}"}}
"""


@dataclass
class Served:
    ws: Workspace
    url: str
    token: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> Path:
        return self.ws.root / "serve.log"

    def start(self) -> None:
        """`shipyard serve` on this workspace (appending to serve.log), once it answers."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cli_argv("serve", "--listen", self.url.removeprefix("http://")),
                                         cwd=self.ws.root, env=_env(), stdout=out, stderr=subprocess.STDOUT)

        def healthy() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            return False
        wait_ready(self.proc, healthy, timeout=60, what="shipyard serve to answer",
                   exited=lambda p: AssertionError(self.log.read_text()))

    def store(self) -> Store:
        return Store.open(f"sqlite:///{self.ws.root / '.shipyard' / 'state.db'}")

    def triggers(self) -> list[Any]:
        with self.store() as store, store.session() as s:
            rows = gq.listed(s, limit=1000)
            s.expunge_all()
            return rows

    def trigger(self, sha: str, env: str = "dev") -> Any:
        return next((t for t in self.triggers() if (t.sha, t.env) == (sha, env)), None)

    def deployments_of(self, sha: str) -> list[Deployment]:
        with self.store() as store, store.session() as s:
            rows = [d for d in s.query(Deployment).all() if d.revision == sha]
            s.expunge_all()
            return rows

    def tip(self, branch: str) -> str | None:
        with self.store() as store, store.session() as s:
            row = s.get(GitTip, ("api", branch))
            return row.sha if row else None

    def hook(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v1/hooks/git", content=body, timeout=60,
                          headers={"Content-Type": "application/json", **headers})


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "GITOPS_TEST_"))}
    env.update(NO_COLOR="1", COLUMNS="200", GITOPS_TEST_GH_HOOK=GH_SECRET, GITOPS_TEST_GL_HOOK=GL_TOKEN)
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("gitops")
    port = free_port()
    ws = create_workspace(root, api_port=port, web_port=free_port())
    q = json.dumps
    ws.config_path.write_text(CONFIG.format(state=q(f"sqlite:///{root / '.shipyard' / 'state.db'}"),
                                            url=q(str(ws.origins["api"])), path=q(str(ws.repos["api"])),
                                            run=q(f"{shlex.quote(sys.executable)} app.py"), port=port))
    made = run_cli(root, "tokens", "create", "--name", "reader", "--scopes", "read", "--json", env=_env(), timeout=60)
    assert made.returncode == 0, str(made)
    listen = free_port()
    served = Served(ws, f"http://127.0.0.1:{listen}", made.json()["token"], port, None)  # type: ignore[arg-type]
    try:
        served.start()
        # The first round records each branch's tip as the baseline and deploys nothing.
        wait_until(lambda: served.tip("dev") and served.tip("stg"), 30, "the baseline tips")
        yield served
    finally:
        if served.proc is not None:
            stop_process(served.proc, timeout=150)
        text = served.log.read_text()
        assert GH_SECRET not in text and GL_TOKEN not in text, "a webhook secret reached the log"
        for db in (root / ".shipyard").rglob("*.db"):
            assert GH_SECRET.encode() not in db.read_bytes() and GL_TOKEN.encode() not in db.read_bytes()


def _github(served: Served, sha: str, *, delivery: str | None = None, secret: str = GH_SECRET,
            branch: str = "dev") -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"ref": f"refs/heads/{branch}", "after": sha, "pusher": {"name": "alice"},
                       "repository": {"full_name": "demo/api", "clone_url": str(served.ws.origins["api"])}}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                  "X-Hub-Signature-256": signature}


def _gitlab(served: Served, sha: str, *, token: str = GL_TOKEN) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"object_kind": "push", "ref": "refs/heads/dev", "after": sha, "user_username": "bob",
                       "project": {"path_with_namespace": "demo/api",
                                   "git_http_url": f"file://{served.ws.origins['api']}"}}).encode()
    return body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": str(uuid.uuid4()), "X-Gitlab-Token": token}


def _debug(served: Served, sha: str) -> str:
    with served.store() as store, store.session() as s:
        deps = [(d.id, d.revision[:12], d.actor, d.state) for d in s.query(Deployment).all()]
    return f"{sha[:12]}: {deps}; {served.triggers()}; {served.ws.root / 'serve.log'}"


def _off_branch_commit(served: Served, version: str) -> str:
    """A pushed commit no watched branch points at: only a webhook naming it can deploy it (the poller
    never sees it), so what the webhook did is not raced by the poller."""
    return commit_version(served.ws, "api", version, branch=f"feature-{version}")


def test_a_push_is_deployed_once_by_the_poller(served: Served) -> None:
    assert served.triggers() == [] and served.deployments_of(served.tip("dev") or "") == []   # baseline only
    sha = commit_version(served.ws, "api", "2.0.0", branch="dev")
    trigger = wait_until(lambda: (t := served.trigger(sha)) and t.deployment_id and t, 30, "the poller's trigger")
    assert (trigger.source, trigger.repo, trigger.branch, trigger.refused) == ("poll", "api", "dev", None)
    [dep] = served.deployments_of(sha)
    assert dep.id == trigger.deployment_id and dep.actor == "gitops:poll" and dep.env == "dev"

    def finished() -> str | None:
        [d] = served.deployments_of(sha)
        return d.state if d.state in ("succeeded", "failed", "rolled_back", "cancelled") else None
    assert wait_until(finished, 90, "the deploy to finish") == "succeeded", _debug(served, sha)
    assert httpx.get(f"http://127.0.0.1:{served.port}/version", timeout=5).json()["version"] == "2.0.0"
    # Visible in the API: the deploy.triggered event on the deployment.
    shown = httpx.get(f"{served.url}/api/v1/deployments/{dep.id}", timeout=10,
                      headers={"Authorization": f"Bearer {served.token}"}).json()
    [event] = [e for e in shown["events"] if e["kind"] == "deploy.triggered"]
    assert event["data"] | {} == {"source": "poll", "delivery": None, "repo": "api", "branch": "dev", "sha": sha,
                                  "pusher": None}

    # The same sha by webhook afterwards: answered, nothing new queued.
    res = served.hook(*_github(served, sha))
    assert res.status_code == 200, res.text
    assert res.json()["deployments"] == [{"service": "api", "env": "dev", "sha": sha, "deployment_id": dep.id,
                                          "refused": None, "new": False}]
    assert len(served.deployments_of(sha)) == 1 and len([t for t in served.triggers() if t.sha == sha]) == 1


def test_github_webhooks_are_verified_and_replays_refused(served: Served) -> None:
    sha = _off_branch_commit(served, "3.0.0")
    before = len(served.triggers())
    for body, headers, status in (
        (*_github(served, sha, secret="wrong"), 401),
        (_github(served, sha)[0] + b" ", _github(served, sha)[1], 401),              # the body was changed
        (_github(served, sha)[0], {**_github(served, sha)[1], "X-Hub-Signature-256": "sha256=nothex"}, 401),
        (_github(served, sha)[0], {"X-GitHub-Event": "push", "X-GitHub-Delivery": "x"}, 401),   # unsigned
        (b'{"zen": 1}', {}, 401),
    ):
        res = served.hook(body, headers)
        assert res.status_code == status and set(res.json()) == {"error"}, res.text
    assert len(served.triggers()) == before

    body, headers = _github(served, sha)
    res = served.hook(body, headers)
    assert res.status_code == 202, res.text
    [queued] = res.json()["deployments"]
    assert queued["new"] and queued["deployment_id"] and queued["sha"] == sha
    trigger = served.trigger(sha)
    assert (trigger.source, trigger.delivery, trigger.pusher) == ("github", headers["X-GitHub-Delivery"], "alice")
    [dep] = served.deployments_of(sha)
    assert dep.id == queued["deployment_id"] and dep.actor == "gitops:github"
    with served.store() as store, store.session() as s:
        [ev] = eq.list_events(s, deployment_id=dep.id, kind="deploy.triggered")
        assert ev.data and ev.data["delivery"] == headers["X-GitHub-Delivery"] and ev.data["pusher"] == "alice"

    # The same delivery again is a replay, even carrying a sha never seen.
    assert served.hook(body, headers).status_code == 409
    fresh = _off_branch_commit(served, "3.0.1")
    replayed = _github(served, fresh, delivery=headers["X-GitHub-Delivery"])
    res = served.hook(*replayed)
    assert res.status_code == 409 and "replay" in res.json()["error"], res.text
    assert served.trigger(fresh) is None and served.deployments_of(fresh) == []
    # Valid, but nothing to do: a tag, a deleted branch, a branch no env deploys, a ping.
    for ref_body, why in ((_github(served, sha, branch="feature-x"), "branch feature-x"),
                          (_github(served, "0" * 40), "deleted")):
        res = served.hook(*ref_body)
        assert res.status_code == 200 and why in res.json()["ignored"], res.text
    ping_body = b'{"zen": "Keep it logically awesome."}'
    ping = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256=" + hmac.new(GH_SECRET.encode(), ping_body, hashlib.sha256).hexdigest()}
    assert served.hook(ping_body, ping).json()["ignored"].startswith("ignored: a ping event")
    garbage = b"not json"
    bad = {**ping, "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
           "X-Hub-Signature-256": "sha256=" + hmac.new(GH_SECRET.encode(), garbage, hashlib.sha256).hexdigest()}
    res = served.hook(garbage, bad)
    assert res.status_code == 400 and "not JSON" in res.json()["error"], res.text


def test_gitlab_tokens(served: Served) -> None:
    sha = _off_branch_commit(served, "4.0.0")
    res = served.hook(*_gitlab(served, sha, token="wrong"))
    assert res.status_code == 401 and served.trigger(sha) is None, res.text
    res = served.hook(*_gitlab(served, sha))
    assert res.status_code == 202, res.text
    [queued] = res.json()["deployments"]
    trigger = served.trigger(sha)
    assert (trigger.source, trigger.pusher, trigger.deployment_id) == ("gitlab", "bob", queued["deployment_id"])
    assert [d.actor for d in served.deployments_of(sha)] == ["gitops:gitlab"], _debug(served, sha)


def test_a_frozen_env_refuses_once_and_records_it(served: Served) -> None:
    sha = commit_version(served.ws, "api", "5.0.0", branch="stg")
    trigger = wait_until(lambda: (t := served.trigger(sha, "stg")) and t.refused and t, 30, "the refused trigger")
    assert trigger.deployment_id is None and "stg is frozen in shipyard.yaml" in trigger.refused
    wait_until(lambda: served.tip("stg") == sha, 10, "the stg tip to be recorded as handled")
    # Two more pushes to dev, each deployed by a later round: stg was polled again meanwhile, untouched.
    for version in ("5.0.1", "5.0.2"):
        later = commit_version(served.ws, "api", version, branch="dev")
        wait_until(lambda later=later: (t := served.trigger(later)) and t.deployment_id, 30, "a later round")
    assert served.deployments_of(sha) == []
    assert len([t for t in served.triggers() if t.env == "stg"]) == 1
    with served.store() as store, store.session() as s:
        refused = [e for e in eq.list_events(s, kind="deploy.refused") if e.env == "stg"]
    assert len(refused) == 1 and "frozen" in refused[0].message
    listed = httpx.get(f"{served.url}/api/v1/gitops/triggers", params={"env": "stg"}, timeout=10,
                       headers={"Authorization": f"Bearer {served.token}"}).json()
    assert [(t["sha"], t["source"], t["deployment_id"], "frozen" in t["refused"]) for t in listed] == [
        (sha, "poll", None, True)]


def test_schemathesis_finds_no_server_error_on_the_hook(served: Served) -> None:
    """Generated headers and bodies against the live hook (GitOps on, secrets set): 4xx, never a 500."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{served.url}/api/openapi.json",
         "--include-path", "/api/v1/hooks/git", "--max-examples", "60", "--seed", "20261202",
         "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
         "response_schema_conformance", "--no-color"],
        capture_output=True, text=True, timeout=180, env={**_env(), "NO_COLOR": "1"}, cwd=served.ws.root)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "POST /api/v1/hooks/git" in done.stdout, done.stdout[-2000:]


def test_a_restarted_daemon_carries_on_from_the_recorded_tip(served: Served) -> None:
    """Stopped, a push while it is down, started again: only the new commit is deployed, once; what was
    handled before (every trigger above) is not redone, and no baseline swallows the push."""
    stop_process(served.proc, timeout=150)
    with served.store() as store, store.session() as s:
        before = s.query(Deployment).count()
    sha = commit_version(served.ws, "api", "6.0.0", branch="dev")
    served.start()
    wait_until(lambda: (t := served.trigger(sha)) and t.deployment_id, 30, "the push made while it was down")
    assert [d.actor for d in served.deployments_of(sha)] == ["gitops:poll"]
    with served.store() as store, store.session() as s:
        assert s.query(Deployment).count() == before + 1
    assert "baseline" not in served.log.read_text().split("stopped")[-1]


async def test_one_failing_repo_does_not_stop_the_others(tmp_path: Path) -> None:
    """In-process rounds over real repos: a missing remote is one line per distinct error and is retried,
    while the healthy repo's baseline and then its push go on (nothing deployed here: no runner needed
    for a baseline, and the push's sha was already handled, so the runner is never asked)."""
    from fleet_helpers import make_fleet

    from shipyard.config import load_config
    from shipyard.daemon.gitops import Watch
    from shipyard.daemon.gitops_watch import GitOps

    fleet = make_fleet(tmp_path / "f", 1)
    said: list[str] = []
    with Store.open(f"sqlite:///{fleet.state_db}") as store:
        gitops = GitOps(load_config(fleet.config_path), fleet.root, store, None, interval=1, say=said.append)
        gitops.watched = [Watch("svc0", "dev", str(fleet.origins["svc0"]), (("api", "dev"),)),
                          Watch("gone", "dev", str(tmp_path / "nowhere.git"), (("web", "dev"),)),
                          Watch("svc0", "nobranch", str(fleet.origins["svc0"]), (("api", "x"),))]
        await gitops.poll_once()
        await gitops.poll_once()
        with store.session() as s:
            assert gq.tip(s, "svc0", "dev") == fleet.sha("svc0", "dev") and gq.tip(s, "gone", "dev") is None
        failures = [line for line in said if "ls-remote failed" in line or "no branch" in line]
        assert len(failures) == 2 and all(line.count("\n") == 0 for line in failures), said
        assert "gone: git ls-remote failed" in failures[0] + failures[1]
        sha = fleet.commit("svc0", "dev", {"app.txt": "v2\n"})
        with store.session() as s:        # handled already (as by a webhook): the round must not deploy it
            gq.claim(s, service="api", env="dev", sha=sha, source="github", repo="svc0", branch="dev")
        await gitops.poll_once()
        with store.session() as s:
            assert gq.tip(s, "svc0", "dev") == sha and len(gq.listed(s)) == 1
