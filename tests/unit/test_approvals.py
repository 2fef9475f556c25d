"""The approval gate's pure parts: the rules (who counts, the wait after the last approval, the deadline),
the signed links (genuine, forged, tampered, expired, another secret, the form token), the links added to
messages and their rendering, and the config (groups, impossible gates, names)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from shipyard.config.alerting import EmailChannel
from shipyard.config.approvals import policy_for
from shipyard.config.loader import check_text
from shipyard.domain.approvals import Decision, Policy, Verdict, approvals_that_count, granted_at, refusal, verdict
from shipyard.errors import ApprovalRefused
from shipyard.notify import approval_links as links
from shipyard.notify.channels import email, slack
from shipyard.notify.message import Message

T0 = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
POLICY = Policy(required=2, approvers=("alice", "bob", "carol"), wait=300, timeout=86400, self_approval=False)
SECRET = "k" * 40


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def approve(who: str, when: float) -> Decision:
    return Decision(who, "approve", at(when))


def test_two_distinct_people_open_the_gate_then_the_wait_runs() -> None:
    one = [approve("alice", 10)]
    assert verdict(POLICY, "dave", one, T0, at(20)) == (Verdict.PENDING, at(86400))
    twice = [*one, approve("alice", 30)]
    assert approvals_that_count(POLICY, "dave", twice) == ["alice"]
    assert verdict(POLICY, "dave", twice, T0, at(40))[0] is Verdict.PENDING     # one person counts once
    both = [*twice, approve("carol", 60)]
    assert granted_at(POLICY, "dave", both) == at(60)
    assert verdict(POLICY, "dave", both, T0, at(100)) == (Verdict.WAITING, at(360))   # the wait starts at 60
    assert verdict(POLICY, "dave", both, T0, at(360))[0] is Verdict.READY
    # A reject, at any time before the deploy starts, wins.
    assert verdict(POLICY, "dave", [*both, Decision("bob", "reject", at(200))], T0, at(400))[0] is Verdict.REJECTED


def test_who_may_decide() -> None:
    assert refusal(POLICY, "dave", "alice") is None
    assert refusal(POLICY, "dave", "mallory") == "mallory is not an approver here (approvers: alice, bob, carol)"
    assert "may not approve" in (refusal(POLICY, "alice", "alice") or "")
    # The requester's approval never counts without self_approval, even if it was stored.
    assert approvals_that_count(POLICY, "alice", [approve("alice", 1), approve("bob", 2)]) == ["bob"]
    mine = Policy(required=1, approvers=None, wait=0, timeout=60, self_approval=True)
    assert refusal(mine, "alice", "alice") is None and refusal(mine, "alice", "anyone") is None
    assert verdict(mine, "alice", [approve("alice", 1)], T0, at(1))[0] is Verdict.READY


def test_the_deadline() -> None:
    assert verdict(POLICY, "dave", [approve("alice", 1)], T0, at(86400))[0] is Verdict.EXPIRED
    # Once approved, the deadline no longer matters: the wait decides.
    done = [approve("alice", 1), approve("bob", 86000)]
    assert verdict(POLICY, "dave", done, T0, at(86250))[0] is Verdict.WAITING
    assert verdict(POLICY, "dave", done, T0, at(86400))[0] is Verdict.READY


def test_a_link_is_genuine_only_with_its_secret_unchanged_and_in_time() -> None:
    token = links.mint(SECRET, "deploy-1", "carol", at(3600), nonce="n1")
    claims = links.verify(SECRET, token, now=at(10))
    assert (claims.deployment_id, claims.approver, claims.nonce, claims.expires) == ("deploy-1", "carol", "n1",
                                                                                    at(3600))
    with pytest.raises(ApprovalRefused, match="expired"):
        links.verify(SECRET, token, now=at(3600))
    with pytest.raises(ApprovalRefused, match="not valid"):
        links.verify("another secret", token, now=at(10))
    payload, mac = token.split(".")
    forged = links.mint(SECRET, "deploy-1", "mallory", at(3600), nonce="n1").split(".")[0]
    for bad in (f"{forged}.{mac}", f"{payload}.{mac[:-2]}xx", payload, "", "." * 5, "x" * 5000):
        with pytest.raises(ApprovalRefused, match="not valid"):
            links.verify(SECRET, bad, now=at(10))
    # A genuine mac over a payload that is not ours (only the secret's holder can make one) is refused too.
    junk = links._b64(b"not json")
    with pytest.raises(ApprovalRefused, match="unreadable"):
        links.verify(SECRET, f"{junk}.{links._mac(SECRET, links._LINK, junk)}", now=at(10))


def test_the_form_token_belongs_to_its_link() -> None:
    a = links.verify(SECRET, links.mint(SECRET, "deploy-1", "carol", at(60)), now=T0)
    b = links.verify(SECRET, links.mint(SECRET, "deploy-1", "carol", at(60)), now=T0)
    links.check_form_token(SECRET, a, links.form_token(SECRET, a))
    for sent in (links.form_token(SECRET, b), "", "x"):
        with pytest.raises(ApprovalRefused, match="not from this approval link"):
            links.check_form_token(SECRET, a, sent)


def _requested(**data: object) -> Message:
    deadline = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    base: dict[str, object] = {"approvers": ["alice", "bob", "carol"], "requested_by": "alice",
                               "self_approval": False, "expires_at": deadline}
    return Message(kind="approval.requested", service="api", env="prod", text="needs 2 approvals",
                   deployment_id="deploy-1", data={**base, **data}, idempotency_key="k" * 32)


def test_messages_get_one_link_per_person_but_the_requester() -> None:
    decorate = links.decorator(SECRET, "https://ship.example.com/", 86400)
    sent = decorate(_requested())
    assert [label for label, _ in sent.links] == ["Review as bob", "Review as carol"]
    for label, url in sent.links:
        assert url.startswith("https://ship.example.com/approve/")
        claims = links.verify(SECRET, url.rsplit("/", 1)[1])
        assert claims.approver == label.removeprefix("Review as ") and claims.deployment_id == "deploy-1"
        # capped by the request's own deadline (2 h), not the links' lifetime (24 h)
        assert claims.expires <= datetime.now(UTC) + timedelta(hours=2)
    assert len({url for _, url in sent.links}) == 2
    assert decorate(_requested(self_approval=True)).links[0][0] == "Review as alice"
    assert decorate(_requested(approvers=None)).links == []           # anyone may approve: no one to name
    other = Message(kind="deploy.started", service="api", env="prod", text="x", deployment_id="deploy-1")
    assert decorate(other) is other


def test_slack_and_email_show_the_links() -> None:
    sent = links.decorator(SECRET, "https://ship.example.com", 3600)(_requested())
    body = slack.render(sent)
    buttons = [e for b in body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [tuple(pair) for pair in sent.links]
    mail = email.render(sent, EmailChannel.model_validate({"type": "email", "to": ["ops@example.com"],
                                                          "smtp": {"host": "localhost"}}))
    text = mail.get_body(("plain",)).get_content()          # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()           # type: ignore[union-attr]
    for label, url in sent.links:
        assert f"{label}: {url}" in text and url in html


GATED = """\
    project: demo
    approvers:
      tech-lead: [alice, bob]
      devops: [carol]
    environments:
      prod: {branch: main, approvals: %s}
    """


def _check(gate: str) -> list[str]:
    return [str(p) for p in check_text(textwrap.dedent(GATED % gate), "shipyard.yaml", {})[1]]


def test_groups_expand_and_impossible_gates_are_config_errors() -> None:
    config, found = check_text(textwrap.dedent(GATED % "{required: 2, approvers: [tech-lead, devops, dave], "
                                               "wait: 5m, branches: [main], timeout: 24h}"), "shipyard.yaml", {})
    assert found == [] and config is not None
    gate = config.environments["prod"].approvals
    policy = policy_for(gate, config.approvers)
    assert policy == Policy(required=2, approvers=("alice", "bob", "carol", "dave"), wait=300, timeout=86400,
                            self_approval=False, branches=("main",))
    assert policy_for(None, {}) is None
    typo = _check("{required: 2, approvers: [tech-leed]}")
    assert typo == ["shipyard.yaml:6: environments.prod.approvals.required: 2 approvals required but only 1 person "
                    "can approve (tech-leed); an entry that is no group under `approvers:` is one person"], typo
    assert "invalid approver" in _check("{approvers: ['bad name']}")[0]
    assert "timeout" in _check("{timeout: 0}")[0]
    assert "self_approval" in _check("{self_approval: maybe}")[0]
    assert "branchs" in _check("{branchs: [main]}")[0]
