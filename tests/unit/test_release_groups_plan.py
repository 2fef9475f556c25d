"""Release groups without I/O: the `releases:` config, `--rev` parsing, the wave plan and the abort plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.config import load_config
from shipyard.errors import ConfigError, UnknownReleaseGroupError
from shipyard.groups.plan import abort_plan, group_outcome, parse_revs, plan_release

BASE = ("project: x\nrepos: {r: {path: r}}\nenvironments: {prod: {branch: main}}\nservices:\n"
        + "".join(f"  {s}: {{repo: r, run: x}}\n" for s in ("api", "ws", "admin-web", "user-web")))
ISSUE = "releases: {platform: {services: [api, ws, admin-web, user-web], order: [[api, ws], [admin-web, user-web]]}}\n"
MEMBERS = ["api", "ws", "admin-web", "user-web"]


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "shipyard.yaml"
    path.write_text(BASE + text)
    return load_config(path, environ={})


def test_the_issue_example_loads(tmp_path: Path) -> None:
    config = load(tmp_path, ISSUE)
    group = config.release_group("platform")  # type: ignore[attr-defined]
    assert group.waves() == [["api", "ws"], ["admin-web", "user-web"]]
    with pytest.raises(UnknownReleaseGroupError, match=r"unknown release group 'web' \(known: platform\)"):
        config.release_group("web")  # type: ignore[attr-defined]


def test_without_order_every_member_is_one_wave(tmp_path: Path) -> None:
    config = load(tmp_path, "releases: {both: {services: [api, ws]}}\n")
    assert config.release_group("both").waves() == [["api", "ws"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "message"), [
    ("releases: {p: {services: [api, nope]}}", r"releases\.p\.services\[1\]: 'nope': unknown service"),
    ("releases: {p: {services: [api, ws], order: [[api], [nope]]}}", "'nope' is not one of the group's services"),
    ("releases: {p: {services: [api, ws], order: [[api, ws], [ws]]}}", "'ws' is in more than one place"),
    ("releases: {p: {services: [api, ws], order: [[api]]}}", "ws in no wave"),
    ("releases: {p: {services: [api, api]}}", "api listed more than once"),
    ("releases: {p: {services: [api], order: [[]]}}", "wave 1 is empty"),
    ("releases: {p: {services: []}}", "releases.p.services"),
    ("releases: {p: {services: [api], ordre: [[api]]}}", "unknown key"),
    ("releases: {'bad name': {services: [api]}}", "invalid name"),
])
def test_bad_group_config_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load(tmp_path, text + "\n")
    assert "\n" not in str(caught.value)


def test_revs_for_one_member_or_all() -> None:
    assert parse_revs(None, MEMBERS) == {}
    assert parse_revs(["api=abc123", "ws = v2 "], MEMBERS) == {"api": "abc123", "ws": "v2"}
    assert parse_revs(["deploy-1", "api=abc"], MEMBERS) == {**dict.fromkeys(MEMBERS, "deploy-1"), "api": "abc"}
    with pytest.raises(ValueError, match="'db' is not a member of the group"):
        parse_revs(["db=abc"], MEMBERS)
    with pytest.raises(ValueError, match="no revision after"):
        parse_revs(["api="], MEMBERS)
    with pytest.raises(ValueError, match="empty revision"):
        parse_revs([" "], MEMBERS)


def test_plan_orders_waves_and_leases() -> None:
    plan = plan_release("platform", "prod", [["ws", "api"], ["user-web", "admin-web"]], {"api": "v2"},
                        dict.fromkeys(MEMBERS, "main"))
    assert [[(m.service, m.ref) for m in w] for w in plan.waves] == [[("ws", "main"), ("api", "v2")],
                                                                     [("user-web", "main"), ("admin-web", "main")]]
    # Leases in one fixed order whatever the waves say: no two runs ever wait for each other in a circle.
    assert plan.services() == ["admin-web", "api", "user-web", "ws"]


def test_abort_goes_back_last_wave_first_and_never_starts_the_rest() -> None:
    plan = plan_release("p", "prod", [["api", "ws"], ["admin-web", "user-web"], ["docs"]], {},
                        {**dict.fromkeys(MEMBERS, "main"), "docs": "main"})
    steps = abort_plan(plan, {"api": "succeeded", "ws": "succeeded", "admin-web": "running",
                              "user-web": "rolled_back"})
    assert steps.finish == ("admin-web",)
    assert steps.flip_back == ("ws", "api")          # reverse wave order, then reverse place in the wave
    assert steps.cancel == ("docs",)
    steps = abort_plan(plan, {"api": "failed"})
    assert (steps.finish, steps.flip_back, steps.cancel) == ((), (), ("ws", "admin-web", "user-web", "docs"))


def test_group_outcome_is_failed_while_any_member_is_not_back() -> None:
    assert group_outcome({"a": "rolled_back", "b": "cancelled", "c": "unchanged", "d": "failed"}) == "rolled_back"
    assert group_outcome({"a": "rolled_back", "b": "rollback_failed"}) == "failed"
    assert group_outcome({"a": "succeeded"}) == "failed"
