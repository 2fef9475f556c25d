"""Checklists, pure parts: the config (every kind, the refusals, the docs' GLI example), what settings
snapshot, the gate's verdict with items left to confirm, the post-check step, and how statuses read."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shipyard.config.loader import check_text
from shipyard.domain.approvals import Decision, Policy, Verdict, verdict
from shipyard.domain.checklists import clip, shown_status
from shipyard.domain.plan import Plan, PostChecklist, StartNew, step_from_dict
from shipyard.engine.settings import checklist_fields

DOCS = Path(__file__).resolve().parents[2] / "docs" / "approvals.md"
BASE = """\
project: t
repos: {api: {path: .}}
environments:
  prod:
    branch: main
    checklists: %s
services:
  api: {repo: api, run: "python -m http.server {port}", deploy: {target: {type: local}}}
"""
T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def problems(lists: str, extra: str = "") -> list[str]:
    _, found = check_text(BASE % lists + extra, "shipyard.yaml", {})
    return [str(p) for p in found]


def test_the_gli_example_in_the_docs_is_valid_and_snapshots_as_documented() -> None:
    block = re.search(r"GLI's release checklist.*?```yaml\n(.*?)```", DOCS.read_text(), re.S)
    assert block is not None
    text = "project: gli\nrepos: {api: {path: .}}\napprovers: {tech-lead: [a, b], devops: [c]}\n" + \
        block.group(1) + 'services:\n  api: {repo: api, run: "x {port}", deploy: {target: {type: local}}}\n'
    config, found = check_text(text, "shipyard.yaml", {})
    assert found == [] and config is not None, found
    got = checklist_fields(config, config.environments["prod"], Path("/srv/gli"))
    items = {i.name: i for i in got["checklist"]}
    assert [i.name for i in got["checklist"] if i.phase == "pre"] == ["staging-tests", "db-backup",
                                                                      "rollback-plan", "on-call"]
    assert (items["db-backup"].kind, items["db-backup"].on_fail) == ("manual", "block")
    assert (items["staging-tests"].kind, items["staging-tests"].on_fail) == ("command", "block")
    assert (items["health"].kind, items["health"].on_fail) == ("http", "rollback")      # the default
    assert items["error-logs"].on_fail == "notify" and items["dashboards"].on_fail is None
    watching = items["watching"].spec["metric"]
    assert watching["for"] == 1800 and watching["alarm_name"] == "high_5xx"
    assert watching["alarm"]["threshold"] == 0.01 and watching["alarm"]["comparison"] == ">"   # written out
    assert got["checklist_dir"] == Path("/srv/gli") and got["checklist_timeout"] == 86400


def test_garbage_is_one_line_each() -> None:
    assert problems("{pre: [{name: x}]}")[0].endswith("give exactly one of confirm, command, http or metric (got none)")
    assert "exactly one" in problems("{pre: [{name: x, confirm: y, http: {url: 'http://h/'}}]}")[0]
    assert "pre items always block" in problems("{pre: [{name: x, command: [true], on_fail: rollback}]}")[0]
    assert "a confirm item has no on_fail" in problems("{post: [{name: x, confirm: y, on_fail: notify}]}")[0]
    assert "unknown alarm 'nope' (alarms: none defined)" in problems("{post: [{name: x, metric: {alarm: nope, "
                                                                     "for: 1m}}]}")[0]
    assert "named twice" in problems("{pre: [{name: x, confirm: y}], post: [{name: x, confirm: z}]}")[0]
    assert "invalid checklist item name" in problems("{pre: [{name: '../x', confirm: y}]}")[0]
    assert "command" in problems("{pre: [{name: x, command: []}]}")[0]
    assert "for" in problems("{post: [{name: x, metric: {alarm: {metric: m, comparison: '>', threshold: 1}}}]}")[0]
    typo = problems("{post: [{name: x, metric: {alarm: a, fro: 1m}}]}",
                    "alarms: {a: {metric: m, comparison: '>', threshold: 1}}\n")
    assert any("metric.fro" in p for p in typo), typo
    assert problems("{post: [{name: x, metric: {alarm: a, for: 2s}}]}",
                    "alarms: {a: {metric: m, comparison: '>', threshold: 1}}\n") == []
    for found in (problems("{pre: [{name: x}]}"), problems("{pre: [{name: x, command: [true], on_fail: z}]}")):
        assert all("\n" not in p for p in found), found


def test_the_gate_stays_shut_while_items_are_left_and_expires_at_the_deadline() -> None:
    only_items = Policy(required=0, approvers=None, wait=0, timeout=3600, self_approval=False)
    assert verdict(only_items, "bob", [], T0, T0, pending=2)[0] is Verdict.PENDING
    assert verdict(only_items, "bob", [], T0, T0, pending=0)[0] is Verdict.READY
    assert verdict(only_items, "bob", [], T0, T0 + timedelta(hours=1), pending=1)[0] is Verdict.EXPIRED
    both = Policy(required=1, approvers=None, wait=60, timeout=3600, self_approval=False)
    approved = [Decision("alice", "approve", T0 + timedelta(seconds=10))]
    assert verdict(both, "bob", approved, T0, T0 + timedelta(seconds=100), pending=1)[0] is Verdict.PENDING
    assert verdict(both, "bob", approved, T0, T0 + timedelta(seconds=100), pending=0)[0] is Verdict.READY
    assert verdict(both, "bob", approved, T0, T0 + timedelta(seconds=20), pending=0)[0] is Verdict.WAITING


def test_the_post_checklist_is_the_plans_last_step_and_round_trips() -> None:
    plan = Plan("rolling", (StartNew(1),))
    assert plan.with_post_checklist(0) is plan
    last = plan.with_post_checklist(3).steps[-1]
    assert last == PostChecklist(3) and step_from_dict(last.to_dict()) == last
    assert last.describe(new="1a2b3c4d (v2)") == "post-deploy checklist (3 checks on 1a2b3c4d (v2))"


def test_statuses_as_people_read_them_and_long_detail_keeps_its_end() -> None:
    assert shown_status("pending", "pre", "manual", "awaiting_approval", False) == "pending"
    assert shown_status("pending", "pre", "manual", "cancelled", True) == "skipped"
    assert shown_status("pending", "post", "http", "rolled_back", True) == "skipped"
    assert shown_status("pending", "post", "manual", "succeeded", True) == "pending"   # may still be confirmed
    assert shown_status("failed", "post", "http", "rolled_back", True) == "failed"
    cut = clip("x" * 50 + "the error", 9)
    assert cut == "[50 characters cut] the error"
    assert clip(None) is None and clip("short") == "short"

