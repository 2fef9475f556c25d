"""`shipyard serve` as a real process (uvicorn on loopback) with tokens made by `shipyard tokens`: the auth
matrix (no token, a bad or revoked one, a missing scope, another environment, the right one) over every
endpoint, history filters and keyset pagination, one deployment in full, one-line errors, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from shipyard.store import Deployment, Store, create_deployment
from shipyard.store import events as eq
from shipyard.store import promotions as pq
from shipyard.store import steps as sq
from shipyard.store.models import EnvFreeze
from shipyard.testing.cli import CliResult, cli_argv, run_cli
from shipyard.testing.processes import stop_process
from shipyard.testing.receivers import free_port
from shipyard.testing.wait import wait_until

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPYARD_")}
    env.update(NO_COLOR="1", COLUMNS="200", SHIPYARD_ACTOR="tester")
    return env


def cli(root: Path, *args: str) -> CliResult:
    res = run_cli(root, *args, env=_env(), timeout=60)
    assert "Traceback" not in res.stderr, str(res)
    return res


@dataclass
class Api:
    url: str
    root: Path
    tokens: dict[str, str]
    proc: subprocess.Popen[bytes]

    def get(self, path: str, token: str | None = None, **params: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", headers=headers, params=params or None, timeout=10)  # type: ignore[arg-type]


def seed(root: Path) -> list[str]:
    """12 deployments: api and web, stg and prod, one a minute; the first with steps and events."""
    ids = []
    with Store.open(f"sqlite:///{root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        for n in range(12):
            service, env = ("api", "web")[n % 2], ("stg", "prod")[(n // 2) % 2]
            state = "failed" if n % 5 == 4 else "succeeded"
            row = create_deployment(s, service=service, env=env, revision=f"{n:040x}", strategy="rolling",
                                    actor="ci" if n % 3 else "alice", state=state, now=T0 + timedelta(minutes=n),
                                    deployment_id=f"d{n:02d}")
            ids.append(row.id)
            if n == 0:
                row.started_at = T0 - timedelta(seconds=90)
        step = sq.start_step(s, "d00", phase="deploy", idx=0, kind="hook", description="after_install")
        sq.finish_step(s, step.id, "succeeded", output="migrated 3 tables")
        eq.add_event(s, kind="deploy.started", message="d00 started", service="api", env="stg", deployment_id="d00")
        for n, env in enumerate(("stg", "prod")):
            pq.create_promotion(s, promotion_id=f"p{n}", kind="promote", source_env=("dev", "stg")[n], target_env=env,
                                stamp=f"2026110{n}", actor="alice", message=f"to {env}", state="completed",
                                repos=[{"repo": "api", "result": "pushed", "branch": env, "new_sha": "a" * 40}],
                                now=T0 + timedelta(hours=n))
    return ids


def wait_serving(proc: subprocess.Popen[bytes], url: str) -> None:
    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
    wait_until(up, 30, f"shipyard serve at {url} to answer")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("api")
    (root / "shipyard.yaml").write_text("project: demo\nenvironments:\n  stg: {branch: stg}\n  prod: {branch: main}\n"
                                        "  hold: {branch: hold, frozen: true}\n")
    tokens = {}
    for name, scopes, envs in (("reader", "read", []), ("stg-reader", "read", ["stg"]), ("deployer", "deploy", []),
                               ("stg-deployer", "deploy", ["stg"]), ("admin", "admin", []), ("revoked", "read", []),
                               ("approver", "approve", []), ("stg-approver", "approve", ["stg"])):
        made = cli(root, "tokens", "create", "--name", name, "--scopes", scopes,
                   *[a for e in envs for a in ("--env", e)], "--json")
        assert made.returncode == 0, str(made)
        tokens[name] = made.json()["token"]
    assert cli(root, "tokens", "revoke", "revoked").returncode == 0
    seed(root)
    port = free_port()
    proc = subprocess.Popen(cli_argv("serve", "--listen", f"127.0.0.1:{port}"), cwd=root, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, url)
        yield Api(url, root, tokens, proc)
    finally:
        stop_process(proc, timeout=15)


# (path, the env it concerns or None, the scope it needs); /metrics covers every env, prod included
def read_sse(api: Api, path: str, token: str, want: int, **headers: str) -> list[dict[str, str]]:
    """Server-sent events from `path` until `want` events (or an `end`) arrived; each {id, event, data}."""
    got: list[dict[str, str]] = []
    current: dict[str, str] = {}
    with httpx.stream("GET", f"{api.url}{path}", headers={"Authorization": f"Bearer {token}", **headers},
                      timeout=httpx.Timeout(20.0)) as res:
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/event-stream")
        for line in res.iter_lines():
            if line.startswith(":") or line.startswith("retry:"):
                continue
            if line:
                key, _, value = line.partition(": ")
                current[key] = value
                continue
            if current:
                got.append(current)
                current = {}
                if len(got) >= want or got[-1].get("event") == "end":
                    return got
    return got


def append_event(api: Api, kind: str, env: str = "stg", deployment_id: str | None = None,
                 state: str | None = None) -> None:
    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        eq.add_event(s, kind=kind, message=kind, service="api", env=env, deployment_id=deployment_id)
        if state is not None and deployment_id is not None:
            row = s.get(Deployment, deployment_id)
            assert row is not None
            row.state = state


ENDPOINTS = [("/api/v1/deployments", None, "read"), ("/api/v1/deployments/d01", "stg", "read"),
             ("/api/v1/deployments/d02", "prod", "read"), ("/api/v1/deployments?env=prod", "prod", "read"),
             ("/api/v1/promotions", None, "read"), ("/api/v1/promotions?env=prod", "prod", "read"),
             ("/api/v1/promotions/p0", "stg", "read"), ("/api/v1/promotions/p1", "prod", "read"),
             ("/api/v1/events", None, "read"), ("/api/v1/events?env=prod", "prod", "read"),
             ("/api/v1/deployments/d02/events/stream", "prod", "read"), ("/metrics", "prod", "read"),
             ("/api/v1/stats?env=prod", "prod", "read"), ("/api/v1/dora?env=prod", "prod", "read"),
             ("/api/v1/reports?env=prod&format=md", "prod", "read"), ("/api/v1/stats?env=stg", "stg", "read"),
             ("/api/v1/daemons", None, "read"), ("/api/v1/gitops/triggers", None, "read"),
             ("/api/v1/gitops/triggers?env=prod", "prod", "read"), ("/api/v1/status", None, "read"),
             ("/api/v1/status?env=prod", "prod", "read"), ("/api/v1/deployments/d01/approvals", "stg", "read"),
             ("/api/v1/deployments/d02/approvals", "prod", "read"), ("/api/v1/approvals", None, "read"),
             ("/api/v1/approvals?env=prod", "prod", "read")]


@pytest.mark.parametrize(("path", "env", "scope"), ENDPOINTS)
def test_auth_matrix(api: Api, path: str, env: str | None, scope: str) -> None:
    for who, token, expected in (
        ("no token", None, 401), ("garbage", "shy_nope", 401), ("revoked", api.tokens["revoked"], 401),
        ("a forged secret", api.tokens["reader"][:-4] + "AAAA", 401),
        ("deploy lacks read", api.tokens["deployer"], 403),
        ("stg-bound", api.tokens["stg-reader"], 403 if env == "prod" else 200),
        ("reader", api.tokens["reader"], 200), ("admin", api.tokens["admin"], 200),
    ):
        res = api.get(path, token)
        assert res.status_code == expected, (who, res.status_code, res.text)
        if expected >= 400:
            assert set(res.json()) == {"error"} and "\n" not in res.json()["error"], res.text
        if expected == 401:
            assert res.headers.get("www-authenticate") == "Bearer"


def test_healthz_and_openapi(api: Api) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    spec = api.get("/api/openapi.json").json()
    for path, *_ in ENDPOINTS:
        template = path.split("?")[0].replace("/d01", "/{deployment_id}").replace("/d02", "/{deployment_id}")
        template = template.replace("/p0", "/{promotion_id}").replace("/p1", "/{promotion_id}")
        assert template in spec["paths"], template


# Answer without a token: the liveness probe, and the push webhook (authenticated by its signature instead;
# with no auto_deploy env here GitOps is off, so it answers 404 whatever token is given).
# The signed approval links' pages answer without a token too (the link is the credential); without
# `approval_links` configured they answer 404.
NO_TOKEN = {"/healthz": 200, "/api/v1/hooks/git": 404, "/approve/{token}": 404}


def test_every_endpoint_needs_a_token_but_the_documented_exceptions(api: Api) -> None:
    spec = api.get("/api/openapi.json").json()
    for template, methods in spec["paths"].items():
        path = template.replace("{deployment_id}", "d01").replace("{promotion_id}", "p0")
        for method in methods:
            res = httpx.request(method.upper(), f"{api.url}{path}", json={}, timeout=10)
            assert res.status_code == NO_TOKEN.get(template, 401), (method, path, res.status_code, res.text)
    hook = httpx.post(f"{api.url}/api/v1/hooks/git", content=b"{}", timeout=10,
                      headers={"Authorization": f"Bearer {api.tokens['admin']}"})
    assert hook.status_code == 404 and "auto_deploy" in hook.json()["error"], hook.text
    assert spec["paths"]["/api/v1/hooks/git"]["post"]["security"] == []


def test_history_filters_and_pages(api: Api) -> None:
    token = api.tokens["reader"]
    everything = api.get("/api/v1/deployments", token, limit=500).json()
    assert [d["id"] for d in everything["items"]] == [f"d{n:02d}" for n in range(11, -1, -1)]
    assert everything["next_cursor"] is None
    seen, cursor = [], None
    while True:
        page = api.get("/api/v1/deployments", token, limit=5, **({"cursor": cursor} if cursor else {})).json()
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [d["id"] for d in everything["items"]]
    prod_api = api.get("/api/v1/deployments", token, service="api", env="prod").json()["items"]
    assert {(d["service"], d["env"]) for d in prod_api} == {("api", "prod")} and len(prod_api) == 3
    failed = api.get("/api/v1/deployments", token, state="failed").json()["items"]
    assert sorted(d["id"] for d in failed) == ["d04", "d09"]
    window = api.get("/api/v1/deployments", token, since=(T0 + timedelta(minutes=3)).isoformat(),
                     until=(T0 + timedelta(minutes=6)).isoformat()).json()["items"]
    assert [d["id"] for d in window] == ["d05", "d04", "d03"]
    assert {d["actor"] for d in api.get("/api/v1/deployments", token, actor="alice").json()["items"]} == {"alice"}
    # A stg-bound token's unfiltered history holds stg only.
    bound = api.get("/api/v1/deployments", api.tokens["stg-reader"], limit=500).json()["items"]
    assert {d["env"] for d in bound} == {"stg"} and len(bound) == 6


def test_one_deployment_and_bad_input(api: Api) -> None:
    token = api.tokens["reader"]
    one = api.get("/api/v1/deployments/d00", token).json()
    assert one["revision"] == "0" * 40 and one["state"] == "succeeded"
    assert [(s["kind"], s["output"]) for s in one["steps"]] == [("hook", "migrated 3 tables")]
    assert [e["kind"] for e in one["events"]] == ["deploy.started"]
    for path, params, status in (("/api/v1/deployments/nope", {}, 404),
                                 ("/api/v1/deployments", {"cursor": "garbage!"}, 400),
                                 ("/api/v1/deployments", {"limit": 0}, 422),
                                 ("/api/v1/deployments", {"state": "exploded"}, 422),
                                 ("/api/v1/deployments", {"since": "2026-11-01T00:00:00"}, 400),
                                 ("/api/v1/deployments", {"since": "yesterday"}, 422)):
        res = api.get(path, token, **params)
        assert res.status_code == status, (path, params, res.text)
        assert set(res.json()) == {"error"} and "\n" not in res.json()["error"], res.text


def test_event_streams_follow_resume_and_end(api: Api) -> None:
    token = api.tokens["reader"]
    first = api.get("/api/v1/events", token).json()
    assert [e["kind"] for e in first] == ["deploy.started"]
    # From the start (after=0), then live: events appended by another process arrive in order.
    import threading
    timer = threading.Timer(1.0, lambda: (append_event(api, "deploy.step"), append_event(api, "alarm.alarm", "prod")))
    timer.start()
    try:
        events = read_sse(api, "/api/v1/events/stream?after=0", token, 3)
    finally:
        timer.join()
    assert [e["event"] for e in events] == ["deploy.started", "deploy.step", "alarm.alarm"]
    assert json.loads(events[2]["data"])["env"] == "prod"
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids)
    # Resuming with Last-Event-ID gives only what came after; a stg token never sees prod.
    append_event(api, "deploy.step")
    again = read_sse(api, "/api/v1/events/stream", token, 2, **{"Last-Event-ID": str(ids[0])})
    assert [e["event"] for e in again] == ["deploy.step", "alarm.alarm"]
    bound = read_sse(api, "/api/v1/events/stream?after=0", api.tokens["stg-reader"], 3)
    assert {json.loads(e["data"])["env"] for e in bound} == {"stg"}
    # One deployment's stream ends once it is finished and its last event is out.
    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        create_deployment(s, service="api", env="stg", revision="f" * 40, strategy="rolling", actor="ci",
                          state="in_progress", deployment_id="live")
    timer = threading.Timer(1.0, lambda: (append_event(api, "deploy.step", deployment_id="live"),
                                          append_event(api, "deploy.succeeded", deployment_id="live",
                                                       state="succeeded")))
    timer.start()
    try:
        live = read_sse(api, "/api/v1/deployments/live/events/stream", token, 10)
    finally:
        timer.join()
    assert [e["event"] for e in live] == ["deploy.step", "deploy.succeeded", "end"]
    assert api.get("/api/v1/deployments/nope/events/stream", token).status_code == 404
    assert api.get("/api/v1/events/stream", token, after=-1).status_code == 422


def test_metrics_agree_with_the_history(api: Api) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    assert api.get("/metrics").status_code == 401
    res = api.get("/metrics", api.tokens["reader"])
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(res.text) for s in family.samples}
    history = api.get("/api/v1/deployments", api.tokens["reader"], limit=500).json()["items"]
    expected: dict[tuple[str, str, str, str], int] = {}
    for d in history:
        key = (d["service"], d["env"], d["kind"], d["state"])
        expected[key] = expected.get(key, 0) + 1
    counted = {tuple(dict(labels)[k] for k in ("service", "env", "kind", "state")): int(v)
               for (name, labels), v in samples.items() if name == "shipyard_deployments_total"}
    assert counted == expected
    key = tuple(sorted({"service": "api", "env": "stg", "state": "succeeded"}.items()))
    assert samples[("shipyard_deployment_duration_seconds_count", key)] == 1
    assert abs(samples[("shipyard_deployment_duration_seconds_sum", key)] - 90.0) < 0.01
    web_prod = tuple(sorted({"service": "web", "env": "prod"}.items()))
    last = samples[("shipyard_last_success_timestamp_seconds", web_prod)]
    newest_web_prod = max(datetime.fromisoformat(d["finished_at"]) for d in history
                          if (d["service"], d["env"], d["state"]) == ("web", "prod", "succeeded"))
    assert abs(last - newest_web_prod.timestamp()) < 0.01
    assert samples[("shipyard_outbox_pending", ())] == 0


def post(api: Api, path: str, token: str | None, body: dict[str, object] | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{api.url}{path}", json=body, headers=headers, timeout=30)


# (path, body, what the deployer gets on prod (this project has no services nor repos), a malformed body)
WRITES = [("/api/v1/deployments", {"service": "api", "env": "prod"}, 400, {"service": "api"}),
          ("/api/v1/rollbacks", {"service": "api", "env": "prod"}, 400, {"service": "api"}),
          ("/api/v1/deployments/d02/cancel", {"reason": "x"}, 409, {"reason": 3}),
          ("/api/v1/promotions", {"source": "stg", "target": "prod"}, 400, {"source": "stg"}),
          ("/api/v1/tag-rollbacks", {"env": "prod", "to": "deploy-1"}, 400, {"env": "prod", "to": ""}),
          ("/api/v1/recover", {"env": "prod"}, 200, {"env": ""})]


@pytest.mark.parametrize(("path", "body", "expected", "malformed"), WRITES)
def test_writes_need_the_deploy_scope_on_the_env(api: Api, path: str, body: dict[str, object], expected: int,
                                                 malformed: dict[str, object]) -> None:
    for who, token, status in (("no token", None, 401), ("reader lacks deploy", api.tokens["reader"], 403),
                               ("stg-bound reader", api.tokens["stg-reader"], 403),
                               ("stg-bound deployer on prod", api.tokens["stg-deployer"], 403),
                               ("deployer", api.tokens["deployer"], expected)):
        res = post(api, path, token, body)
        assert res.status_code == status, (who, res.text)
        if status >= 400:
            assert set(res.json()) == {"error"} and "\n" not in res.json()["error"], res.text
    assert post(api, path, api.tokens["deployer"], malformed).status_code == 422


def test_cancel_status_and_recover_answers(api: Api) -> None:
    deployer, admin = api.tokens["deployer"], api.tokens["admin"]
    finished = post(api, "/api/v1/deployments/d02/cancel", deployer, None)
    assert finished.status_code == 409 and "already finished" in finished.json()["error"], finished.text
    assert post(api, "/api/v1/deployments/nope/cancel", deployer, None).status_code == 404
    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        create_deployment(s, service="api", env="prod", revision="e" * 40, strategy="rolling", actor="ci",
                          state="in_progress", deployment_id="running")
    running = post(api, "/api/v1/deployments/running/cancel", deployer, None)
    assert running.status_code == 409 and "rollback" in running.json()["error"], running.text
    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        create_deployment(s, service="api", env="prod", revision="e" * 40, strategy="rolling", actor="ci",
                          deployment_id="waiting")
    done = post(api, "/api/v1/deployments/waiting/cancel", deployer, {"reason": "not today"})
    assert done.json() == {"id": "waiting", "service": "api", "env": "prod", "state": "cancelled",
                           "reason": "cancelled by deployer: not today", "actor": "deployer"}, done.text
    shown = api.get("/api/v1/deployments/waiting", api.tokens["reader"]).json()
    assert shown["state"] == "cancelled" and shown["finished_at"]
    assert [(e["kind"], e["data"]["actor"]) for e in shown["events"]] == [("deploy.cancelled", "deployer")]
    # `shipyard cancel` on the machine itself: the same function, the local actor; one line when refused.
    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        create_deployment(s, service="api", env="prod", revision="e" * 40, strategy="rolling", actor="ci",
                          deployment_id="waiting2")
    local = cli(api.root, "cancel", "waiting2", "--json")
    assert local.returncode == 0 and local.json()["reason"] == "cancelled by tester", str(local)
    refused = cli(api.root, "cancel", "running")
    assert refused.returncode == 1 and "rollback" in refused.stderr and len(refused.error_lines) == 1, str(refused)
    for dep_id in ("running", "waiting", "waiting2"):   # the rest of the module's tests see the seeded history
        with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
            s.delete(s.get(Deployment, dep_id))
    # Recover: every env needs admin (with nothing to recover, no agent is started); status of no service.
    assert post(api, "/api/v1/recover", deployer, {}).status_code == 403
    assert post(api, "/api/v1/recover", admin, None).json() == {"recovered": []}
    assert api.get("/api/v1/status", api.tokens["reader"]).json() == {"status": [], "agent": True}
    bad = api.get("/api/v1/status", api.tokens["reader"], env="qa")
    assert bad.status_code == 400 and "unknown environment" in bad.json()["error"], bad.text


def test_freeze_writes_need_admin_and_say_who(api: Api) -> None:
    """Lifting a freeze, and going through one, need `admin` on the env (a freeze holds back what a
    deploy token does); what is lifted is recorded with the token's name. Bodies the schema refuses: 422."""
    deployer, admin, stg_deployer = api.tokens["deployer"], api.tokens["admin"], api.tokens["stg-deployer"]
    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        pq.freeze_env(s, "prod", reason="rolled back to deploy-1", actor="alice", promotion_id="rb-1")
    for token, status, text in ((None, 401, "token"), (api.tokens["reader"], 403, "deploy"),
                                (deployer, 403, "'admin' scope to unfreeze prod"), (stg_deployer, 403, "bound to stg")):
        res = post(api, "/api/v1/unfreeze", token, {"env": "prod"})
        assert res.status_code == status and text in res.json()["error"], res.text
    done = post(api, "/api/v1/unfreeze", admin, {"env": "prod"})
    assert done.json() == {"env": "prod", "lifted": ["rb-1"], "actor": "admin"}, done.text
    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        assert [(r.lifted_by, r.lifted_at is not None) for r in s.scalars(select(EnvFreeze))] == [("admin", True)]
    assert post(api, "/api/v1/unfreeze", admin, {"env": "prod"}).json()["lifted"] == []
    for body, status, text in (({"env": "hold"}, 409, "frozen in shipyard.yaml"), ({"env": "qa"}, 400, "qa"),
                               ({"env": ""}, 422, "env"), ({"env": "prod", "why": 1}, 422, "why")):
        res = post(api, "/api/v1/unfreeze", admin, body)
        assert res.status_code == status and text in res.json()["error"], (body, res.text)
        assert "\n" not in res.json()["error"]

    # Deploy and rollback options: going through a freeze needs admin and a reason; --set names are checked.
    for path in ("/api/v1/deployments", "/api/v1/rollbacks"):
        override = {"service": "api", "env": "prod", "override_freeze": True, "reason": "the fix"}
        res = post(api, path, deployer, override)
        assert res.status_code == 403 and "'admin' scope to override a freeze of prod" in res.json()["error"]
        assert post(api, path, admin, override).status_code == 400           # past auth: no service here
        for bad in ({"override_freeze": True}, {"override_freeze": True, "reason": "  "}, {"reason": "why"},
                    {"no_wait": "maybe"}):
            res = post(api, path, admin, {"service": "api", "env": "prod", **bad})
            assert res.status_code == 422 and "\n" not in res.json()["error"], (path, bad, res.text)
    for sets in ({"1BAD": "x"}, {"A-B": "x"}, {"OK": "x" * 5000}):
        res = post(api, "/api/v1/deployments", deployer, {"service": "api", "env": "prod", "set": sets})
        assert res.status_code == 422, (sets, res.text)
    ok = post(api, "/api/v1/deployments", deployer, {"service": "api", "env": "prod", "set": {"LOG_LEVEL": "debug"},
                                                    "no_wait": True})
    assert ok.status_code == 400 and "unknown service" in ok.json()["error"], ok.text

    # hotfix sync: deploy on every env it merges into; this project has no promotion chain (one line, 400).
    assert post(api, "/api/v1/hotfix-syncs", api.tokens["reader"], {}).status_code == 403
    chain = post(api, "/api/v1/hotfix-syncs", deployer, None)
    assert chain.status_code == 400 and "promotion chain" in chain.json()["error"], chain.text
    assert post(api, "/api/v1/hotfix-syncs", deployer, {"only": "api"}).status_code == 422


def test_approvals_need_the_approve_scope_on_the_env(api: Api) -> None:
    from shipyard.domain.approvals import Policy
    from shipyard.store import approvals as aq

    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        create_deployment(s, service="api", env="prod", revision="e" * 40, strategy="rolling", actor="approver",
                          state="awaiting_approval", deployment_id="gated")
        aq.create_request(s, "gated", service="api", env="prod", requested_by="approver", holder="elsewhere:1:1",
                          policy=Policy(required=2, approvers=None, wait=0, timeout=3600, self_approval=False))
    path = "/api/v1/deployments/gated/approvals"
    try:
        for who, token, status in (("no token", None, 401), ("garbage", "shy_nope", 401),
                                   ("reader lacks approve", api.tokens["reader"], 403),
                                   ("deployer lacks approve", api.tokens["deployer"], 403),
                                   ("stg-bound approver on prod", api.tokens["stg-approver"], 403),
                                   ("the requester", api.tokens["approver"], 409),
                                   ("admin", api.tokens["admin"], 200), ("admin twice", api.tokens["admin"], 409)):
            res = post(api, path, token, {"comment": "fine"})
            assert res.status_code == status, (who, res.text)
            if status >= 400:
                assert set(res.json()) == {"error"} and "\n" not in res.json()["error"], res.text
        assert "counts once" in post(api, path, api.tokens["admin"], None).json()["error"]
        assert "may not approve" in post(api, path, api.tokens["approver"], None).json()["error"]
        assert post(api, path, api.tokens["admin"], {"decision": "maybe"}).status_code == 422
        assert post(api, "/api/v1/deployments/nope/approvals", api.tokens["approver"], None).status_code == 404
        ungated = post(api, "/api/v1/deployments/d02/approvals", api.tokens["approver"], None)
        assert ungated.status_code == 409 and "no approval gate" in ungated.json()["error"], ungated.text
        assert [g["id"] for g in api.get("/api/v1/approvals", api.tokens["reader"]).json()] == ["gated"]
        assert api.get("/api/v1/approvals", api.tokens["stg-reader"]).json() == []
        assert api.get("/api/v1/approvals", api.tokens["reader"], env="stg").json() == []
        shown = api.get(path, api.tokens["reader"]).json()
        assert [(d["approver"], d["decision"], d["via"]) for d in shown["decisions"]] == [("admin", "approve", "api")]
        assert shown["gate"]["approved"] == ["admin"] and shown["gate"]["verdict"] == "pending", shown
        assert api.get(path, api.tokens["stg-reader"]).status_code == 403
        # The requester may withdraw: a reject by anyone allowed cancels, with who and why.
        gone = post(api, path, api.tokens["approver"], {"decision": "reject", "comment": "wrong build"})
        assert gone.json()["state"] == "cancelled" and gone.json()["reason"] == "rejected by approver: wrong build"
        assert api.get("/api/v1/deployments/gated", api.tokens["reader"]).json()["state"] == "cancelled"
        page = httpx.get(f"{api.url}/approve/anything", timeout=10)
        assert page.status_code == 404 and "not configured" in page.text
    finally:
        with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
            s.delete(s.get(Deployment, "gated"))
            for e in eq.list_events(s, deployment_id=None, limit=1000):
                if e.kind.startswith("approval."):
                    s.delete(e)


def test_checklist_confirms_need_the_approve_scope_on_the_env(api: Api) -> None:
    from shipyard.domain.approvals import Policy
    from shipyard.domain.checklists import Item
    from shipyard.store import approvals as aq
    from shipyard.store import checklists as cq

    with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
        create_deployment(s, service="api", env="prod", revision="f" * 40, strategy="rolling", actor="ci",
                          state="awaiting_approval", deployment_id="listed")
        aq.create_request(s, "listed", service="api", env="prod", requested_by="ci", holder="elsewhere:1:1",
                          policy=Policy(required=0, approvers=None, wait=0, timeout=3600, self_approval=False))
        cq.create_items(s, "listed", [Item("pre", "db-backup", "manual", {"confirm": "DB backup taken"}, "block"),
                                      Item("pre", "tests", "command", {"command": ["true"], "timeout": 5}, "block"),
                                      Item("post", "logs", "manual", {"confirm": "Logs read"}, None)])
    path = "/api/v1/deployments/listed/checklist/db-backup"
    try:
        for who, token, status in (("no token", None, 401), ("reader lacks approve", api.tokens["reader"], 403),
                                   ("deployer lacks approve", api.tokens["deployer"], 403),
                                   ("stg-bound approver on prod", api.tokens["stg-approver"], 403),
                                   ("an approver", api.tokens["approver"], 200), ("twice", api.tokens["admin"], 409)):
            res = post(api, path, token, {"comment": "snap-1"})
            assert res.status_code == status, (who, res.text)
            if status >= 400:
                assert set(res.json()) == {"error"} and "\n" not in res.json()["error"], res.text
        auto = post(api, "/api/v1/deployments/listed/checklist/tests", api.tokens["admin"], None)
        assert auto.status_code == 409 and "shipyard runs it" in auto.json()["error"], auto.text
        early = post(api, "/api/v1/deployments/listed/checklist/logs", api.tokens["admin"], None)
        assert early.status_code == 409 and "once it succeeded" in early.json()["error"], early.text
        assert post(api, "/api/v1/deployments/listed/checklist/nope", api.tokens["admin"], None).status_code == 409
        assert post(api, "/api/v1/deployments/nope/checklist/db-backup", api.tokens["admin"], None).status_code == 404
        assert post(api, path, api.tokens["admin"], {"comment": "x" * 1001}).status_code == 422
        shown = api.get("/api/v1/deployments/listed", api.tokens["reader"]).json()["checklist"]
        assert [(i["name"], i["kind"], i["status"], i["by"], i["detail"]) for i in shown] == [
            ("db-backup", "manual", "confirmed", "approver", "snap-1"), ("tests", "command", "pending", None, None),
            ("logs", "manual", "pending", None, None)], shown
        assert api.get("/api/v1/deployments/d02", api.tokens["reader"]).json()["checklist"] == []
    finally:
        with Store.open(f"sqlite:///{api.root / '.shipyard' / 'state.db'}") as store, store.session() as s:
            s.delete(s.get(Deployment, "listed"))
            for e in eq.list_events(s, deployment_id=None, limit=1000):
                if e.kind.startswith("checklist."):
                    s.delete(e)


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(api: Api) -> None:
    """Property-based requests from the OpenAPI description (fixed seed: the same cases every run); the
    endless event streams are left out (their cases are in the stream test)."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{api.url}/api/openapi.json",
         "-H", f"Authorization: Bearer {api.tokens['admin']}", "--max-examples", "25", "--seed", "20261202",
         "--exclude-path-regex", "stream", "--checks", "not_a_server_error,status_code_conformance,"
         "content_type_conformance,response_schema_conformance", "--no-color"],
        capture_output=True, text=True, timeout=240, env={**_env(), "NO_COLOR": "1"}, cwd=api.root)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "passed" in done.stdout


def test_stats_dora_and_reports(api: Api) -> None:
    token = api.tokens["reader"]
    window = {"since": (T0 - timedelta(hours=1)).isoformat(), "until": (T0 + timedelta(hours=1)).isoformat()}
    got = api.get("/api/v1/stats", token, **window).json()
    history = [d for d in api.get("/api/v1/deployments", token, limit=500, **window).json()["items"]]
    assert got["total"] == len(history) == 12
    assert got["failed"] == sum(d["state"] in ("failed", "rolled_back") for d in history) == 2
    prod = api.get("/api/v1/stats", api.tokens["stg-reader"], env="stg", **window).json()
    assert prod["total"] == sum(d["env"] == "stg" for d in history)
    dora = api.get("/api/v1/dora", token, **window).json()
    assert {"overall", "by_service_env", "bands_year"} <= set(dora)
    md = api.get("/api/v1/reports", token, format="md", **window)
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown") and "#" in md.text
    assert api.get("/api/v1/reports", token, **window).json()["stats"]["total"] == 12
    # A bound token must name its env; a bad period is one line.
    assert api.get("/api/v1/stats", api.tokens["stg-reader"]).status_code == 403
    bad = api.get("/api/v1/stats", token, period="forever")
    assert bad.status_code == 400 and "period" in bad.json()["error"]


def test_promotions(api: Api) -> None:
    listed = api.get("/api/v1/promotions", api.tokens["reader"]).json()
    assert [p["id"] for p in listed] == ["p1", "p0"]
    assert [p["id"] for p in api.get("/api/v1/promotions", api.tokens["stg-reader"]).json()] == ["p0"]
    one = api.get("/api/v1/promotions/p1", api.tokens["reader"]).json()
    assert (one["target_env"], [(r["repo"], r["result"]) for r in one["repos"]]) == ("prod", [("api", "pushed")])
    assert api.get("/api/v1/promotions/p9", api.tokens["reader"]).status_code == 404


def test_tokens_are_listed_without_secrets_and_used_is_recorded(api: Api) -> None:
    for name in ("reader", "admin"):  # used here, whichever tests ran before
        assert api.get("/api/v1/deployments", api.tokens[name]).status_code == 200
    listed = cli(api.root, "tokens", "list", "--json").json()["tokens"]
    assert {t["name"] for t in listed} == {"reader", "stg-reader", "deployer", "stg-deployer", "admin", "approver",
                                           "stg-approver"}
    assert all(t["last_used_at"] for t in listed if t["name"] in ("reader", "admin"))
    text = cli(api.root, "tokens", "list", "--revoked", "--json").stdout
    # The secret is all that follows "shy_<id>_"; it may itself hold "_", so it is cut by position.
    assert "revoked" in text and not any(token[len("shy_") + 17:] in text for token in api.tokens.values())
    for args, message in ((("tokens", "create", "--name", "reader"), "exists"),
                          (("tokens", "create", "--name", "x", "--scopes", "root"), "unknown scope"),
                          (("tokens", "create", "--name", "x", "--env", "qa"), "unknown environment"),
                          (("tokens", "create", "--name", "bad name"), "token name"),
                          (("tokens", "revoke", "ghost"), "no live token")):
        res = cli(api.root, *args)
        assert res.returncode == 2 and message in res.stderr and len(res.error_lines) == 1, str(res)


def test_a_taken_port_is_one_line_and_sigterm_stops_cleanly(api: Api) -> None:
    port = api.url.rsplit(":", 1)[1]
    res = cli(api.root, "serve", "--listen", f"127.0.0.1:{port}")
    assert res.returncode == 2 and "cannot listen on 127.0.0.1" in res.stderr and len(res.error_lines) == 1
    assert cli(api.root, "serve", "--listen", "nowhere").returncode == 2
    second = f"127.0.0.1:{free_port()}"
    other = subprocess.Popen(cli_argv("serve", "--listen", second), cwd=api.root, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    try:
        wait_serving(other, f"http://{second}")
    finally:
        other.send_signal(signal.SIGTERM)
        assert other.wait(15) == 0
