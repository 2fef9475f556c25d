"""The approval gate end to end, with real deploys of the demo workspace: `shipyard deploy` waits for two
distinct approvers holding no lease, then the wait timer, then deploys; self-approval, a second approval of
one person, a reject, a newer request, the timeout and a revision off the allowed branches; and `shipyard
serve` SIGKILLed while a deployment waits: restarted, it keeps the approval given and runs the deploy; the
signed link in the Slack-like webhook message, reused, forged and expired."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shipyard.demo.workspace import commit_version
from shipyard.notify.approval_links import mint
from shipyard.testing.receivers import ThreadedHttpReceiver

from .conftest import (
    E2E,
    assert_ok,
    assert_one_error,
    gate_row,
    make_tokens,
    start_serve,
    stop_serve,
    wait_until,
)

GATE = ("approvals: {required: 2, approvers: [tech-lead, devops], wait: 2s, branches: [main], timeout: 1h}")
GROUPS = "\napprovers:\n  tech-lead: [alice, bob]\n  devops: [carol]\n"
LINK_SECRET = "s3cret-for-the-links-of-this-test-0123456789"


def gated(e2e: E2E, gate: str = GATE, state: str | None = None, extra: str = "") -> None:
    def edit(text: str) -> str:
        text = text.replace('prod: {branch: main, promote_from: stg, tag: "deploy-{ts}"}',
                            f'prod: {{branch: main, promote_from: stg, tag: "deploy-{{ts}}", {gate}}}', 1)
        # one api instance: the gate is under test here, not the rolling strategy (kept fast)
        text = text.replace("target: {type: local, instances: 3}", "target: {type: local, instances: 1}", 1)
        if state is not None:
            text = re.sub(r"(?m)^state: .*$", f"state: {state}", text, count=1)
        return text + GROUPS + extra
    e2e.edit_config(edit)


def row(e2e: E2E, dep_id: str | None = None) -> dict[str, Any] | None:
    return gate_row(e2e, "prod", dep_id)


def awaiting(e2e: E2E, after: str | None = None) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        r = row(e2e)
        return r if r and r["state"] == "awaiting_approval" and r["id"] != after else None
    return wait_until(ready, 60, "a deployment awaiting approval", interval=0.1)


def as_(who: str) -> dict[str, str]:
    return {"SHIPYARD_ACTOR": who}


@pytest.fixture
def bg(new_workspace) -> Iterator[list[Any]]:  # type: ignore[no-untyped-def]
    """Background CLIs of the test, killed (if still running) before the workspace is checked for leaks."""
    started: list[Any] = []
    yield started
    for b in started:
        b.kill()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def state(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def test_two_distinct_approvers_then_the_wait(new_workspace, bg, state: str | None) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    gated(e2e, state=state)
    deploy = e2e.background("deploy", "api", "--env", "prod", "--json")
    bg.append(deploy)
    waiting = awaiting(e2e)
    dep_id = waiting["id"]
    assert waiting["lease"] is None, "a deployment awaiting approval holds no lease"
    assert "approval.requested" in waiting["events"]
    first = assert_ok(e2e.cli("approve", dep_id, "-m", "looks fine", **as_("alice")))
    assert "approved by alice (1 of 2)" in first.stdout + first.stderr, str(first)
    again = assert_one_error(e2e.cli("approve", dep_id, **as_("alice")), 1)
    assert "counts once" in again, again
    stranger = assert_one_error(e2e.cli("approve", dep_id, **as_("mallory")), 1)
    assert "mallory is not an approver" in stranger, stranger
    assert row(e2e, dep_id)["state"] == "awaiting_approval"          # type: ignore[index]
    done = json.loads(assert_ok(e2e.cli("approve", dep_id, "--json", **as_("carol"))).stdout)
    assert done["approved"] == ["alice", "carol"] and done["state"] == "awaiting_approval", done
    res = deploy.finish()
    assert res.returncode == 0, str(res)
    assert json.loads(res.stdout)["state"] == "succeeded"
    final = row(e2e, dep_id)
    assert final is not None and final["granted_at"] is not None
    # The wait timer (2s) ran after the second approval, before the first step.
    assert final["started_at"] - final["granted_at"] >= timedelta(seconds=2), final
    kinds = final["events"]
    assert kinds.index("approval.granted") < kinds.index("deploy.started"), kinds
    assert kinds.count("approval.approved") == 2
    assert final["decisions"] == [("alice", "approve", "cli"), ("carol", "approve", "cli")]


def test_self_approval_a_newer_request_a_reject_and_the_branch(new_workspace, bg, receiver) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    gated(e2e, extra=f"notifications:\n  channels:\n    hook: {{type: webhook, url: \"{receiver.url}/hook\"}}\n"
                     "  routes:\n    - {events: [\"approval.requested\"], to: [hook]}\n")
    mine = e2e.background("deploy", "api", "--env", "prod", "--json", **as_("alice"))
    bg.append(mine)
    first = awaiting(e2e)["id"]
    # No daemon here: the waiting CLI itself tells people, while it waits (not when it ends).
    told = wait_until(lambda: [r.json() for r in receiver.requests], 30, "approval.requested delivered")
    assert told[0]["deployment_id"] == first and told[0]["data"]["approvers"] == ["alice", "bob", "carol"]
    assert mine.proc.poll() is None
    own = assert_one_error(e2e.cli("approve", first, **as_("alice")), 1)
    assert "alice requested this deploy and may not approve it" in own, own
    # A newer request for api/prod supersedes the waiting one: its CLI ends, cancelled, saying by which.
    newer = e2e.background("deploy", "api", "--env", "prod", "--json", **as_("bob"))
    bg.append(newer)
    second = awaiting(e2e, after=first)["id"]
    ended = mine.finish()
    assert ended.returncode == 1 and json.loads(ended.stdout)["state"] == "cancelled", str(ended)
    superseded = row(e2e, first)
    assert superseded is not None and superseded["reason"] == f"superseded by {second} (a newer request for api/prod)"
    assert "approval.superseded" in superseded["events"]
    # A reject cancels at once, with who and why.
    assert_ok(e2e.cli("approve", second, "--reject", "-m", "not during the sale", **as_("carol")))
    rejected = newer.finish()
    assert rejected.returncode == 1, str(rejected)
    out = json.loads(rejected.stdout)
    assert (out["state"], out["reason"]) == ("cancelled", "rejected by carol: not during the sale"), out
    late = assert_one_error(e2e.cli("approve", second, **as_("alice")), 1)
    assert "is cancelled" in late, late
    # Off the allowed branches: refused up front, one line, exit 2, nothing recorded as a deployment.
    commit_version(e2e.ws, "api", "v-feature", branch="feature-x")
    refused = assert_one_error(e2e.deploy("api", "--rev", "feature-x", env="prod"), 2)
    assert "is on none of main" in refused, refused
    assert row(e2e)["id"] == second                                  # type: ignore[index]


def test_the_timeout_cancels(new_workspace) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    gated(e2e, gate="approvals: {required: 1, approvers: [alice], timeout: 2s}")
    res = e2e.deploy("api", "--json", env="prod")
    assert res.returncode == 1, str(res)
    out = json.loads(res.stdout)
    assert (out["state"], out["reason"]) == ("cancelled", "not approved within 2s (timeout)"), out
    assert "approval.expired" in row(e2e)["events"]                   # type: ignore[index]
    late = assert_one_error(e2e.cli("approve", out["id"], **as_("alice")), 1)
    assert "is cancelled" in late, late


# ---- the daemon ----------------------------------------------------------------------------------------

def tokens(e2e: E2E) -> dict[str, str]:
    return make_tokens(e2e, {"ci": "deploy,read", "alice": "approve", "carol": "approve,read", "reader": "read"})


def post(url: str, path: str, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
def receiver() -> Iterator[Any]:
    with ThreadedHttpReceiver() as rx:
        yield rx


def test_a_killed_daemon_keeps_the_approval_and_the_link_works_once(new_workspace, receiver) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    links = (f"approval_links: {{secret: \"${{SHIPYARD_TEST_LINK_SECRET}}\", url: \"http://127.0.0.1\"}}\n"
             f"notifications:\n  channels:\n    hook: {{type: webhook, url: \"{receiver.url}/hook\"}}\n"
             "  routes:\n    - {events: [\"approval.*\"], to: [hook]}\n")
    gated(e2e, gate="approvals: {required: 2, approvers: [tech-lead, devops], wait: 1s}", extra=links)
    e2e.env["SHIPYARD_TEST_LINK_SECRET"] = LINK_SECRET
    tok = tokens(e2e)
    server, url = start_serve(e2e)
    try:
        accepted = post(url, "/api/v1/deployments", tok["ci"], {"service": "api", "env": "prod"})
        assert accepted.status_code == 202, accepted.text
        dep_id = accepted.json()["id"]
        awaiting(e2e)
        # `shipyard approve` through the server: the decision is the token's name, whoever runs the CLI.
        given = assert_ok(e2e.cli("--server", url, "approve", dep_id, "-m", "ok by me", "--json",
                                  SHIPYARD_TOKEN=tok["alice"], SHIPYARD_ACTOR="someone-else"))
        assert json.loads(given.stdout)["approved"] == ["alice"], str(given)
        refused = assert_one_error(e2e.cli("--server", url, "approve", dep_id, SHIPYARD_TOKEN=tok["reader"]), 1)
        assert "lacks the 'approve' scope" in refused, refused
        # SIGKILL: no shutdown, no drain; the wait's holder is dead, the approval is in the store.
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
        # The message went to the webhook with one link per person who may approve.
        def message() -> Any:
            return next((r.json() for r in receiver.requests if r.json()["kind"] == "approval.requested"), None)
        sent = wait_until(message, 30, "the approval.requested message")
        by_label = {label: link for label, link in sent["links"]}
        assert set(by_label) == {"Review as alice", "Review as bob", "Review as carol"}, by_label
        carol = by_label["Review as carol"].replace("http://127.0.0.1", url)
        page = httpx.get(carol, timeout=10)
        assert page.status_code == 200 and "Approve" in page.text and "form_token" in page.text, page.text
        assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
        assert row(e2e, dep_id)["decisions"] == [("alice", "approve", "api")], "a GET never decides"  # type: ignore[index]
        form = re.search(r"name='form_token' value='([^']+)'", page.text)
        assert form is not None
        no_form = httpx.post(carol, data={"decision": "approve"}, timeout=10)
        assert no_form.status_code == 403, no_form.text
        cross = httpx.post(carol, data={"decision": "approve", "form_token": form.group(1)}, timeout=10,
                           headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403, cross.text
        forged = carol[:-3] + ("AAA" if not carol.endswith("AAA") else "BBB")
        assert httpx.get(forged, timeout=10).status_code == 403
        expired = f"{url}/approve/" + mint(LINK_SECRET, dep_id, "bob", datetime.now(UTC) - timedelta(seconds=1))
        late = httpx.get(expired, timeout=10)
        assert late.status_code == 403 and "expired" in late.text, late.text
        other_key = f"{url}/approve/" + mint("another-secret", dep_id, "bob", datetime.now(UTC) + timedelta(hours=1))
        assert httpx.get(other_key, timeout=10).status_code == 403
        used = httpx.post(carol, data={"decision": "approve", "form_token": form.group(1), "comment": "go"},
                          timeout=10)
        assert used.status_code == 200 and "Approved (2 of 2)" in used.text, used.text
        again = httpx.post(carol, data={"decision": "approve", "form_token": form.group(1)}, timeout=10)
        assert again.status_code == 409 and "used already" in again.text, again.text
        final = wait_until(lambda: (r := row(e2e, dep_id)) and r["state"] in ("succeeded", "failed", "rolled_back")
                           and r, 120, "the taken-over deploy to finish")
        assert final["state"] == "succeeded", final
        assert final["decisions"] == [("alice", "approve", "api"), ("carol", "approve", "link")]
        assert "approval.resumed" in final["events"]
        gate = httpx.get(f"{url}/api/v1/deployments/{dep_id}/approvals",
                         headers={"Authorization": f"Bearer {tok['reader']}"}, timeout=10).json()
        assert [d["approver"] for d in gate["decisions"]] == ["alice", "carol"] and gate["gate"]["required"] == 2
        # A server stopping while a deployment waits for people does not wait for them: it lets go at once
        # and the next daemon takes the wait over.
        again = post(url, "/api/v1/deployments", tok["ci"], {"service": "api", "env": "prod"}).json()["id"]
        awaiting(e2e, after=dep_id)
        assert post(url, f"/api/v1/deployments/{again}/approvals", tok["alice"], {}).status_code == 200
        began = time.monotonic()
        stop_serve(server)
        assert time.monotonic() - began < 60
        kept = row(e2e, again)
        assert kept is not None and kept["state"] == "awaiting_approval" and kept["decisions"] == [
            ("alice", "approve", "api")], kept
    finally:
        stop_serve(server)


def test_a_killed_cli_keeps_the_approval_and_recover_runs_it(new_workspace, bg) -> None:  # type: ignore[no-untyped-def]
    e2e: E2E = new_workspace()
    gated(e2e, gate="approvals: {required: 2, approvers: [tech-lead, devops]}")
    deploy = e2e.background("deploy", "api", "--env", "prod", "--json")
    bg.append(deploy)
    dep_id = awaiting(e2e)["id"]
    assert_ok(e2e.cli("approve", dep_id, **as_("bob")))
    deploy.proc.send_signal(signal.SIGKILL)
    deploy.finish(timeout=30)
    # Not approved yet: recover keeps it (never cancels a deployment awaiting approval, never waits on people).
    kept = json.loads(assert_ok(e2e.cli("recover", "--json")).stdout)["recovered"]
    assert [(r["id"], r["state"]) for r in kept] == [(dep_id, "awaiting_approval")], kept
    assert row(e2e, dep_id)["state"] == "awaiting_approval"          # type: ignore[index]
    assert_ok(e2e.cli("approve", dep_id, **as_("carol")))
    ran = json.loads(assert_ok(e2e.cli("recover", "--json")).stdout)["recovered"]
    assert [(r["id"], r["state"]) for r in ran] == [(dep_id, "succeeded")], ran
    final = row(e2e, dep_id)
    assert final is not None and final["decisions"] == [("bob", "approve", "cli"), ("carol", "approve", "cli")]
    assert "approval.resumed" in final["events"] and final["events"][-1] == "deploy.succeeded"

