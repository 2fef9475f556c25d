"""The dashboard's pure parts: the checklist panel from the API's deployment answer (with and without the
field, with garbage), the login's origin and redirect checks, and the escaping of hostile values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shipyard.web import charts, session, views
from shipyard.web.routes import templates

HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'
SAMPLE = [
    {"phase": "pre", "name": "db backup", "kind": "command", "status": "passed", "by": "shipyard",
     "at": "2026-12-03T10:00:00Z", "detail": "exit 0", "on_fail": "abort"},
    {"phase": "pre", "name": "release notes", "kind": "manual", "status": "confirmed", "by": "alice",
     "at": datetime(2026, 12, 3, 10, 1, tzinfo=UTC), "detail": None, "on_fail": "abort"},
    {"phase": "post", "name": "p99 latency", "kind": "metric", "status": "failed", "by": None, "at": None,
     "detail": "p99 0.9 s > 0.5 s", "on_fail": "rollback"},
    {"phase": "post", "name": HOSTILE, "kind": "http", "status": "pending", "by": HOSTILE, "at": "garbage",
     "detail": HOSTILE, "on_fail": "warn"},
]


def panel(checklist: object) -> str:
    grouped = views.checklist_of({"id": "d1", "checklist": checklist})
    return str(templates.get_template("_macros.html").module.checklist_panel(grouped))  # type: ignore[attr-defined]


def test_no_checklist_field_or_an_empty_one_shows_no_panel() -> None:
    assert views.checklist_of({"id": "d1"}) == {}
    assert views.checklist_of({"id": "d1", "checklist": None}) == {}
    assert panel([]).strip() == ""


def test_the_checklist_groups_by_phase_in_order_with_every_field() -> None:
    grouped = views.checklist_of({"checklist": SAMPLE})
    assert list(grouped) == ["pre", "post"]
    assert [c["name"] for c in grouped["pre"]] == ["db backup", "release notes"]
    assert grouped["pre"][0]["at"] == datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert grouped["post"][1]["at"] is None                     # an unreadable time is shown as "-"
    html = panel(SAMPLE)
    assert "Before the deploy" in html and "After the deploy" in html
    assert html.index("Before the deploy") < html.index("After the deploy")
    for name, status in (("db backup", "passed"), ("release notes", "confirmed"), ("p99 latency", "failed")):
        assert f'data-check="{name}" data-status="{status}"' in html
    assert "2026-12-03 10:00:00 UTC" in html and "rollback" in html and "p99 0.9 s &gt; 0.5 s" in html


def test_hostile_and_malformed_items_are_text_or_left_out() -> None:
    html = panel([*SAMPLE, "not an item", 42, {"phase": "sideways", "status": "exploded"}])
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-status="unknown"' in html and "exploded" in html   # an unknown status, shown as it came
    assert "Other" in html                                        # an unknown phase has its own table


def test_charts_escape_every_label() -> None:
    svg = str(charts.alarm_chart(HOSTILE, {"metric": HOSTILE, "threshold": 1, "comparison": ">",
                                           "last": {"values": [0.5, 2.0]}}))
    assert "<script>" not in svg and "<img" not in svg and "&lt;script&gt;" in svg
    assert "<script>" not in str(charts.split_bar([(HOSTILE, 100.0)]))


@pytest.mark.parametrize(("origin", "referer", "ok"), [
    ("http://127.0.0.1:8080", None, True),
    ("https://127.0.0.1:8080", None, True),           # TLS ended by a proxy in front: same host
    ("http://evil.example", None, False),
    ("http://127.0.0.1:8081", None, False),           # another port is another site's server
    ("null", None, False),
    (None, "http://127.0.0.1:8080/deployments/x", True),
    (None, "http://evil.example/127.0.0.1:8080", False),
    (None, "javascript:127.0.0.1:8080", False),
    (None, None, False),
])
def test_a_post_must_come_from_this_host(origin: str | None, referer: str | None, ok: bool) -> None:
    assert session.origin_ok("127.0.0.1:8080", origin, referer) is ok


@pytest.mark.parametrize(("target", "expected"), [
    ("/deployments/x?y=1", "/deployments/x?y=1"), ("//evil.example/", "/"), ("https://evil.example/", "/"),
    ("/\\evil.example", "/"), ("", "/"), (None, "/"), ("deployments", "/"),
])
def test_after_login_only_a_local_path(target: str | None, expected: str) -> None:
    assert session.safe_next(target) == expected


def test_the_csrf_token_is_the_sessions_own() -> None:
    mine = session.csrf_token("shy_token_a")
    assert session.csrf_ok("shy_token_a", mine)
    assert not session.csrf_ok("shy_token_b", mine)
    assert not session.csrf_ok("shy_token_a", "")
    assert not session.csrf_ok(None, mine)
    assert "shy_token_a" not in mine
    assert session.cookie_attributes(secure=False) == {"httponly": True, "samesite": "strict", "secure": False,
                                                        "path": "/"}


def approvals_html(*, can_decide: bool, granted: bool) -> str:
    from types import SimpleNamespace

    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    dep = SimpleNamespace(id="deploy-1", service="api", env="prod", state="awaiting_approval", revision="a" * 40,
                          ref="main")
    gate = {"requested_by": HOSTILE, "requested_at": now, "approved": ["alice"], "required": 2,
            "granted_at": now if granted else None, "expires_at": now}
    return templates.get_template("_overview_live.html").render(
        approvals=[{"dep": dep, "gate": gate, "decisions": [], "commit": {"subject": HOSTILE},
                    "can_decide": can_decide}],
        envs=[], services=[], cells={}, extras=None, agent=True, csrf="c" * 64, token=None, can_deploy=False,
        now=now)


def test_approvers_get_both_buttons_and_a_reject_still_counts_during_the_wait() -> None:
    html = approvals_html(can_decide=True, granted=False)
    assert 'action="/actions/approve"' in html and 'action="/actions/reject"' in html
    assert "approved 1 of 2 (alice)" in html
    assert "<script>" not in html and html.count("&lt;script&gt;") == 2
    waiting = approvals_html(can_decide=True, granted=True)
    assert 'action="/actions/approve"' not in waiting and 'action="/actions/reject"' in waiting
    assert 'name="comment"' in waiting and "required" in waiting.split('action="/actions/reject"')[1]


def test_without_the_approve_scope_no_decision_forms() -> None:
    html = approvals_html(can_decide=False, granted=False)
    assert "deploy-1" in html and "<form" not in html
