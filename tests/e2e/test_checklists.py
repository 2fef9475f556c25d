"""Checklists end to end, with real deploys of the demo workspace: manual pre items that a deploy waits for
holding no lease (confirmed through the CLI; a SIGKILLed CLI's confirmations kept and its deploy run by
`shipyard recover`), an automated pre item failing before any instance starts, post items (a real HTTP
server answering the http item, a real command, an alarm watched over the router's real counters) that
roll back to the previous revision or only notify, garbage config refused in one line, and `shipyard serve`:
confirm through the API (a read-only token refused), SIGKILLed while waiting, restarted, nothing lost."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from shipyard.demo.workspace import commit_version

from .conftest import (
    E2E,
    assert_ok,
    assert_one_error,
    gate_row,
    get_version,
    make_tokens,
    start_serve,
    wait_until,
)

STG = 'stg:  {branch: stg, promote_from: dev, tag: "stg-deploy-{ts}", auto_deploy: true}'
PY = sys.executable


def checklisted(e2e: E2E, lists: dict[str, Any]) -> None:
    """Give stg these checklists (JSON is YAML), with one api instance: the checklist is under test here."""
    def edit(text: str) -> str:
        assert STG in text
        text = text.replace(STG, f'stg: {{branch: stg, promote_from: dev, tag: "stg-deploy-{{ts}}", '
                                 f'checklists: {json.dumps(lists)}}}', 1)
        return text.replace("target: {type: local, instances: 3}", "target: {type: local, instances: 1}", 1)
    e2e.edit_config(edit)


def row(e2e: E2E, dep_id: str | None = None) -> dict[str, Any] | None:
    return gate_row(e2e, "stg", dep_id)


def awaiting(e2e: E2E) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        r = row(e2e)
        return r if r and r["state"] == "awaiting_approval" else None
    return wait_until(ready, 60, "a deployment awaiting its checklist", interval=0.1)


def shown(e2e: E2E, dep_id: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(assert_ok(e2e.cli("show", dep_id, "--json")).stdout)
    return out


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


class StatusServer:
    """A real HTTP server on a loopback port answering every GET with `status` (tests flip it)."""

    def __init__(self) -> None:
        outer = self
        self.status, self.hits = 200, 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = f"status {outer.status}".encode()
                self.send_response(outer.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ready"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StatusServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def http_check() -> Iterator[StatusServer]:
    with StatusServer() as srv:
        yield srv


@pytest.fixture
def bg(new_workspace) -> Iterator[list[Any]]:  # type: ignore[no-untyped-def]
    started: list[Any] = []
    yield started
    for b in started:
        b.kill()


PRE = {"pre": [{"name": "staging-tests", "command": [PY, "-c", "print('412 passed')"], "timeout": "30s"},
               {"name": "db-backup", "confirm": "DB backup taken"},
               {"name": "on-call", "confirm": "On-call engineer named in #deploys"}]}


def test_manual_pre_items_block_until_confirmed_and_a_killed_cli_loses_nothing(new_workspace, bg) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    checklisted(e2e, PRE)
    deploy = e2e.background("deploy", "api", "--env", "stg", "--json")
    bg.append(deploy)
    waiting = awaiting(e2e)
    dep_id = waiting["id"]
    assert waiting["lease"] is None, "a deployment waiting for its checklist holds no lease"
    assert "checklist.requested" in waiting["events"] and "checklist.item.passed" in waiting["events"]
    items = by_name(shown(e2e, dep_id)["checklist"])
    assert items["staging-tests"]["status"] == "passed" and "412 passed" in items["staging-tests"]["detail"]
    assert (items["db-backup"]["status"], items["db-backup"]["kind"]) == ("pending", "manual")
    assert not e2e.agent_instances() or all(i.get("env") != "stg" for i in e2e.agent_instances())
    # Approving is not confirming; unknown and automated items are refused by name.
    no_gate = assert_one_error(e2e.cli("approve", dep_id), 1)
    assert "needs no approval, only its checklist" in no_gate, no_gate
    unknown = assert_one_error(e2e.cli("checklist", "confirm", dep_id, "db-bakup"), 1)
    assert "no checklist item 'db-bakup'" in unknown and "db-backup, on-call" in unknown, unknown
    auto = assert_one_error(e2e.cli("checklist", "confirm", dep_id, "staging-tests"), 1)
    assert "shipyard runs it" in auto, auto
    done = assert_ok(e2e.cli("checklist", "confirm", dep_id, "db-backup", "-m", "snap-0412",
                             SHIPYARD_ACTOR="alice"))
    assert "confirmed by alice; still to confirm: on-call" in done.stdout + done.stderr, str(done)
    twice = assert_one_error(e2e.cli("checklist", "confirm", dep_id, "db-backup", SHIPYARD_ACTOR="bob"), 1)
    assert "was confirmed by alice" in twice, twice
    # SIGKILL the waiting CLI: the confirmation is in the store; recover never waits on people.
    deploy.proc.send_signal(signal.SIGKILL)
    deploy.finish(timeout=30)
    kept = json.loads(assert_ok(e2e.cli("recover", "--json")).stdout)["recovered"]
    assert [(r["id"], r["state"]) for r in kept] == [(dep_id, "awaiting_approval")], kept
    assert_ok(e2e.cli("checklist", "confirm", dep_id, "on-call", SHIPYARD_ACTOR="bob"))
    ran = json.loads(assert_ok(e2e.cli("recover", "--json")).stdout)["recovered"]
    assert [(r["id"], r["state"]) for r in ran] == [(dep_id, "succeeded")], ran
    final = shown(e2e, dep_id)
    items = by_name(final["checklist"])
    assert [(i["status"], i["by"]) for i in (items["db-backup"], items["on-call"])] == \
        [("confirmed", "alice"), ("confirmed", "bob")], items
    assert items["db-backup"]["detail"] == "snap-0412" and items["db-backup"]["at"]
    kinds = [e["kind"] for e in final["events"]]
    assert kinds.index("checklist.item.confirmed") < kinds.index("deploy.started"), kinds
    text = assert_ok(e2e.cli("show", dep_id)).stdout
    assert "checklist" in text and "db-backup" in text and "alice" in text, text


def test_a_failing_pre_check_stops_the_deploy_before_any_instance_starts(new_workspace) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    checklisted(e2e, {"pre": [
        {"name": "staging-tests", "command": [PY, "-c", "import sys; print('3 failed'); sys.exit(1)"]},
        {"name": "db-backup", "confirm": "DB backup taken"}]})
    res = e2e.deploy("api", "--json")
    assert res.returncode == 1, str(res)
    out = json.loads(res.stdout)
    assert out["state"] == "failed" and "checklist pre item staging-tests failed" in out["reason"], out
    r = row(e2e, out["id"])
    assert r is not None and r["started_at"] is None and "deploy.started" not in r["events"], r
    assert "checklist.requested" not in r["events"], "nobody is asked about a deploy that cannot go"
    assert e2e.agent_instances() == [], "no instance started"
    items = by_name(shown(e2e, out["id"])["checklist"])
    assert items["staging-tests"]["status"] == "failed" and "3 failed" in items["staging-tests"]["detail"]
    assert items["db-backup"]["status"] == "skipped", items
    alone = json.loads(assert_ok(e2e.cli("checklist", "show", out["id"], "--json")).stdout)["checklist"]
    assert alone == shown(e2e, out["id"])["checklist"]
    table = assert_ok(e2e.cli("checklist", "show", out["id"])).stdout
    assert "staging-tests" in table and "3 failed" in table and "skipped" in table, table
    gone = assert_one_error(e2e.cli("checklist", "show", "deploy-nope"), 2)
    assert "no deployment 'deploy-nope'" in gone, gone


def test_post_items_roll_back_or_notify_and_watch_an_alarm(new_workspace, http_check: StatusServer) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    post = [{"name": "ready", "http": {"url": http_check.url, "expect_status": 200, "timeout": "3s"}},
            {"name": "error-logs", "confirm": "Error logs checked"}]
    checklisted(e2e, {"post": post})
    first = json.loads(assert_ok(e2e.deploy("api", "--json")).stdout)
    port = e2e.ws.api_port
    v1 = get_version(port)["version"]
    assert http_check.hits >= 1
    assert by_name(shown(e2e, first["id"])["checklist"])["ready"]["status"] == "passed"
    # The http item now answers 500: the deploy of v2 rolls back (on_fail defaults to rollback), v1 serves.
    http_check.status = 500
    commit_version(e2e.ws, "api", "v2-bad-post")
    res = e2e.deploy("api", "--json")
    assert res.returncode == 1, str(res)
    out = json.loads(res.stdout)
    assert out["state"] == "rolled_back" and "checklist post item ready failed" in out["reason"], out
    assert get_version(port)["version"] == v1
    after = shown(e2e, out["id"])
    items = by_name(after["checklist"])
    assert items["ready"]["status"] == "failed" and "-> 500" in items["ready"]["detail"], items
    assert items["ready"]["on_fail"] == "rollback" and items["error-logs"]["status"] == "skipped"
    kinds = [e["kind"] for e in after["events"]]
    assert kinds.index("checklist.item.failed") < kinds.index("rollback.started"), kinds
    late = assert_one_error(e2e.cli("checklist", "confirm", out["id"], "error-logs"), 1)
    assert "post items are confirmed once it succeeded" in late, late
    # notify only: the failing smoke test is told, the deploy stays succeeded; the alarm is watched 3s over
    # the router's real counters while traffic flows.
    checklisted_post = [
        {"name": "smoke", "command": [PY, "-c", "import sys; sys.exit(4)"], "on_fail": "notify"},
        {"name": "error-rate", "metric": {"alarm": {"metric": "http_5xx_ratio", "period": "1s", "comparison": ">",
                                                   "threshold": 0.01, "treat_missing_data": "notBreaching"},
                                         "for": "3s"}},
        {"name": "error-logs", "confirm": "Error logs checked"}]
    e2e.edit_config(lambda text: text.replace(json.dumps({"post": post}), json.dumps({"post": checklisted_post})))
    commit_version(e2e.ws, "api", "v3")
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/version", timeout=2)
            stop.wait(0.05)
    load = threading.Thread(target=traffic, daemon=True)
    load.start()
    try:
        ok = json.loads(assert_ok(e2e.deploy("api", "--json")).stdout)
    finally:
        stop.set()
        load.join(5)
    assert ok["state"] == "succeeded" and get_version(port)["version"] == "v3", ok
    final = shown(e2e, ok["id"])
    items = by_name(final["checklist"])
    assert (items["smoke"]["status"], items["smoke"]["on_fail"]) == ("failed", "notify"), items
    assert items["error-rate"]["status"] == "passed" and "stayed OK for 3s" in items["error-rate"]["detail"]
    step = next(s for s in final["steps"] if s["kind"] == "checklist")
    assert step["state"] == "succeeded"
    # The post-check phase lasted the alarm's 3 s (the deployment stayed in progress meanwhile).
    took = datetime.fromisoformat(step["ended_at"]) - datetime.fromisoformat(step["started_at"])
    assert took.total_seconds() >= 3, took
    assert items["error-logs"]["status"] == "pending"          # a succeeded deploy's manual post item waits
    assert_ok(e2e.cli("checklist", "confirm", ok["id"], "error-logs", SHIPYARD_ACTOR="carol"))
    assert by_name(shown(e2e, ok["id"])["checklist"])["error-logs"]["by"] == "carol"
    failed = [e for e in final["events"] if e["kind"] == "checklist.item.failed"]
    assert failed and failed[0]["data"]["on_fail"] == "notify", failed


@pytest.mark.parametrize(("lists", "says"), [
    ({"pre": [{"name": "x", "confirm": "y", "command": ["true"]}]}, "exactly one of confirm, command, http or metric"),
    ({"pre": [{"name": "x", "command": ["true"], "on_fail": "notify"}]}, "pre items always block"),
    ({"post": [{"name": "x", "metric": {"alarm": "nope", "for": "1m"}}]}, "unknown alarm 'nope'"),
    ({"post": [{"name": "a b", "confirm": "y"}]}, "invalid checklist item name"),
    ({"pre": [{"name": "x", "confirm": "y"}], "post": [{"name": "x", "confirm": "z"}]}, "named twice"),
    ({"post": [{"name": "x", "http": {"url": "ftp://h/"}}]}, "url"),
    ({"post": [{"name": "x", "command": ["true"], "on_fail": "explode"}]}, "on_fail"),
])
def test_garbage_checklists_are_refused_in_one_line(module_workspace: E2E, lists: dict[str, Any], says: str) -> None:
    e2e = module_workspace
    old = e2e.edit_config(lambda text: text.replace(
        STG, f'stg: {{branch: stg, promote_from: dev, checklists: {json.dumps(lists)}}}', 1))
    try:
        err = assert_one_error(e2e.cli("config", "validate"), 2)
        assert says in err, err
        err = assert_one_error(e2e.deploy("api"), 2)
        assert says in err, err
    finally:
        e2e.edit_config(lambda _: old)


def tokens(e2e: E2E) -> dict[str, str]:
    return make_tokens(e2e, {"ci": "deploy,read", "alice": "approve,read", "reader": "read"})


def confirm(url: str, dep_id: str, item: str, token: str) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/deployments/{dep_id}/checklist/{item}", json={"comment": "done"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_the_api_confirms_as_the_token_and_a_killed_daemon_loses_nothing(new_workspace) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    checklisted(e2e, PRE)
    tok = tokens(e2e)
    server, url = start_serve(e2e)
    try:
        accepted = httpx.post(f"{url}/api/v1/deployments", json={"service": "api", "env": "stg"},
                              headers={"Authorization": f"Bearer {tok['ci']}"}, timeout=30)
        assert accepted.status_code == 202, accepted.text
        dep_id = accepted.json()["id"]
        awaiting(e2e)
        refused = confirm(url, dep_id, "db-backup", tok["reader"])
        assert refused.status_code == 403 and set(refused.json()) == {"error"}, refused.text
        deployer = confirm(url, dep_id, "db-backup", tok["ci"])
        assert deployer.status_code == 403, deployer.text
        given = confirm(url, dep_id, "db-backup", tok["alice"])
        assert given.status_code == 200 and given.json()["by"] == "alice", given.text
        assert given.json()["left"] == ["on-call"]
        again = confirm(url, dep_id, "db-backup", tok["alice"])
        assert again.status_code == 409 and "confirmed once" in again.json()["error"], again.text
        assert confirm(url, "deploy-nope", "db-backup", tok["alice"]).status_code == 404
        detail = httpx.get(f"{url}/api/v1/deployments/{dep_id}", headers={"Authorization": f"Bearer {tok['reader']}"},
                           timeout=30).json()
        assert [sorted(i) for i in detail["checklist"]] == \
            [["at", "by", "detail", "kind", "name", "on_fail", "phase", "status"]] * 3, detail["checklist"]
        got = [(i["phase"], i["name"], i["kind"], i["status"], i["by"], i["on_fail"]) for i in detail["checklist"]]
        assert got == [
            ("pre", "staging-tests", "command", "passed", "shipyard", "block"),
            ("pre", "db-backup", "manual", "confirmed", "alice", "block"),
            ("pre", "on-call", "manual", "pending", None, "block")], detail["checklist"]
        server.proc.send_signal(signal.SIGKILL)
        server.finish(timeout=30)
    finally:
        server.kill()
    left = row(e2e, dep_id)
    assert left is not None and left["state"] == "awaiting_approval" and left["holder"], left
    server, url = start_serve(e2e)
    try:
        wait_until(lambda: (row(e2e, dep_id) or {}).get("holder") != left["holder"], 30,
                   "the restarted daemon to take the wait over")
        through_cli = assert_ok(e2e.cli("--server", url, "checklist", "confirm", dep_id, "on-call", "--json",
                                        SHIPYARD_TOKEN=tok["alice"], SHIPYARD_ACTOR="someone-else"))
        assert json.loads(through_cli.stdout)["by"] == "alice", str(through_cli)
        wait_until(lambda: (row(e2e, dep_id) or {}).get("state") == "succeeded", 90, "the deploy to succeed")
    finally:
        server.kill()
    final = row(e2e, dep_id)
    assert final is not None and "approval.resumed" in final["events"], final
