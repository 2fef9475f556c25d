"""The fleet's pure parts as data: the planner, tag names, push argv, porcelain parsing, selection."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shipyard.config import Config
from shipyard.errors import UsageError
from shipyard.fleet.build import RefUpdate
from shipyard.fleet.inventory import Commit, RepoFacts, parse_status_v2, select_repos
from shipyard.fleet.parallel import RepoOutcome, for_each
from shipyard.fleet.plan import (
    Merge,
    Restore,
    RestoreTarget,
    Tag,
    hotfix_pairs,
    plan_hotfix,
    plan_promotion,
    plan_rollback,
)
from shipyard.fleet.push import parse_porcelain, push_argv, reverse
from shipyard.fleet.rollback import resolve_target
from shipyard.fleet.tags import promotion_id, promotion_time, stamp, tag_glob, tag_name, tag_pattern, tag_stamp

A, B, C, D = "a" * 40, "b" * 40, "c" * 40, "d" * 40


def facts(repo: str, tips: dict[str, str], ahead: dict[tuple[str, str], int], tags: dict[str, str] | None = None
          ) -> RepoFacts:
    f = RepoFacts(repo, tips, tags or {})
    for pair, n in ahead.items():
        f.ahead_count[pair] = n
        f.ahead[pair] = tuple(Commit(f"{i:040x}", f"commit {i}") for i in range(n))
    return f


def test_promotion_merges_repos_with_new_commits_and_skips_the_rest() -> None:
    repos = plan_promotion([facts("api", {"dev": A, "stg": B}, {("dev", "stg"): 2}),
                            facts("web", {"dev": C, "stg": C}, {("dev", "stg"): 0})],
                           plan_id="promote-x", source_branch="dev", target_branch="stg",
                           tag="stg-deploy-20250115-143022", message="ship")
    api, web = repos
    assert api.action == "update" and api.source_sha == A
    merge, tag = api.steps
    assert isinstance(merge, Merge)
    assert (merge.branch, merge.source, merge.source_sha, merge.no_ff) == ("stg", "dev", A, True)
    assert merge.message.startswith("ship\n") and "Shipyard-Promotion: promote-x" in merge.message
    assert isinstance(tag, Tag) and tag.name == "stg-deploy-20250115-143022" and tag.branch == "stg"
    assert api.moving[0].count == 2 and api.branches == ("stg",)
    assert web.action == "skip" and "nothing to promote" in web.reason


def test_promotion_refuses_a_tag_that_exists_and_pins_resumed_commits() -> None:
    taken = facts("api", {"dev": A, "stg": B}, {("dev", "stg"): 1}, tags={"deploy-1": B})
    [refused] = plan_promotion([taken], plan_id="p", source_branch="dev", target_branch="stg", tag="deploy-1",
                               message="")
    assert refused.action == "refuse" and "tag deploy-1 already exists" in refused.reason
    pinned = facts("api", {"dev": A, "stg": B}, {(C, "stg"): 1})
    [plan] = plan_promotion([pinned], plan_id="p", source_branch="dev", target_branch="stg", tag=None, message="",
                            pinned={"api": C})
    assert plan.steps == (Merge("stg", "dev", plan.steps[0].message, source_sha=C),)   # type: ignore[union-attr]
    assert plan.steps[0].message.startswith("Merge branch 'dev' into stg")              # type: ignore[union-attr]


CHAIN = ("main", "stg", "dev")


def test_hotfix_pairs_cover_both_directions() -> None:
    assert set(hotfix_pairs(CHAIN)) == {("main", "stg"), ("stg", "main"), ("main", "dev"), ("dev", "main"),
                                        ("stg", "dev"), ("dev", "stg")}


@pytest.mark.parametrize(("ahead", "expected"), [
    # nothing anywhere
    ({}, []),
    # hotfix on main, stg is behind (fast-forward) and dev lacks it too
    ({("main", "stg"): 1, ("main", "dev"): 1, ("dev", "main"): 3}, [("stg", "main"), ("dev", "stg")]),
    # hotfix on main, stg diverged (merge commit): dev must then take stg's merge commit as well
    ({("main", "stg"): 1, ("stg", "main"): 2, ("main", "dev"): 1}, [("stg", "main"), ("dev", "stg")]),
    # main already in stg, but stg has something dev lacks
    ({("stg", "dev"): 1, ("stg", "main"): 1}, [("dev", "stg")]),
    # stg fast-forwards to main and dev already has all of main
    ({("main", "stg"): 1, ("dev", "main"): 2}, [("stg", "main")]),
])
def test_hotfix_back_merges_only_what_is_needed(ahead: dict[tuple[str, str], int],
                                                expected: list[tuple[str, str]]) -> None:
    [plan] = plan_hotfix([facts("api", {"main": A, "stg": B, "dev": C}, ahead)], plan_id="h", chain=CHAIN,
                         message="")
    got = [(s.branch, s.source) for s in plan.steps if isinstance(s, Merge)]
    assert got == expected
    assert all(isinstance(s, Merge) and not s.no_ff for s in plan.steps)
    assert plan.action == ("update" if expected else "skip")


def test_rollback_restores_refuses_and_skips() -> None:
    f = [facts("api", {"main": A}, {("main", B): 3}), facts("web", {"main": C}, {}), facts("db", {"main": D}, {})]
    targets = {"api": RestoreTarget(B, "tree-b", "its tag", tip_tree="tree-a"),
               "web": RestoreTarget(C, "tree-c", "its tag", tip_tree="tree-c"),
               "db": RestoreTarget(None, None, "no tag deploy-1")}
    api, web, db = plan_rollback(f, targets, plan_id="r", branch="main", to="deploy-1", force=False,
                                 tag="deploy-2", message="")
    assert api.action == "update" and isinstance(api.steps[0], Restore) and not api.steps[0].force
    assert api.steps[0].commit == B and api.moving[0].count == 3 and api.source_sha == B
    assert web.action == "skip" and db.action == "refuse" and db.reason == "no tag deploy-1"
    [forced] = plan_rollback(f[:1], targets, plan_id="r", branch="main", to="deploy-1", force=True, tag=None,
                             message="")
    assert isinstance(forced.steps[0], Restore) and forced.steps[0].force and len(forced.steps) == 1


def test_rollback_target_prefers_record_then_tag_then_an_earlier_tag() -> None:
    f = facts("api", {"main": A}, {}, tags={"deploy-20250110-090000": B, "deploy-20250120-090000": C,
                                            "stg-deploy-20250114-000000": D})
    kw = {"to": "deploy-20250115-140000", "template": "deploy-{ts}", "env": "prod"}
    assert resolve_target(f, {"api": D}, **kw).found == "the promotion record"                # type: ignore[arg-type]
    earlier = resolve_target(f, {}, **kw)                                                    # type: ignore[arg-type]
    assert earlier.commit == B and earlier.found == "earlier tag deploy-20250110-090000"
    own = resolve_target(f, {}, to="deploy-20250120-090000", template="deploy-{ts}", env="prod")
    assert own.commit == C and own.found == "its tag"
    none = resolve_target(f, {}, to="deploy-20240101-000000", template="deploy-{ts}", env="prod")
    assert none.commit is None


def test_tag_names_and_patterns() -> None:
    when = promotion_time("Asia/Seoul", datetime(2025, 1, 15, 5, 30, 22, tzinfo=UTC))
    assert stamp(when) == "20250115-143022"
    assert re.fullmatch(r"promote-20250115-143022-[0-9a-f]{4}", promotion_id("promote", when))
    assert tag_name("stg-deploy-{ts}", "20250115-143022", "stg") == "stg-deploy-20250115-143022"
    assert tag_name("{env}-{ts}-{sha}", "1", "prod") == "prod-1-{sha}"
    assert tag_name("{env}-{ts}-{sha}", "1", "prod", sha=A) == "prod-1-aaaaaaaa"
    assert tag_glob("{env}-deploy-{ts}", "stg") == "refs/tags/stg-deploy-*"
    assert tag_stamp("deploy-20250115-143022", "deploy-{ts}", "prod") == "20250115-143022"
    assert tag_stamp("stg-deploy-20250115-143022", "deploy-{ts}", "prod") is None
    assert tag_pattern("deploy-{ts}-{sha}", "prod").fullmatch("deploy-20250115-143022-abcd1234")


def test_push_argv_is_one_atomic_push_with_leases_only_where_asked() -> None:
    updates = [RefUpdate("refs/heads/stg", A, B), RefUpdate("refs/tags/t1", None, C)]
    assert push_argv(updates) == ["push", "--atomic", "--porcelain", "origin", f"{B}:refs/heads/stg",
                                  f"{C}:refs/tags/t1"]
    back = reverse(updates)
    assert back == [RefUpdate("refs/heads/stg", B, A, lease=True), RefUpdate("refs/tags/t1", C, None, lease=True)]
    assert push_argv(back) == ["push", "--atomic", "--porcelain", "origin", f"--force-with-lease=refs/heads/stg:{B}",
                               f"--force-with-lease=refs/tags/t1:{C}", f"{A}:refs/heads/stg", ":refs/tags/t1"]
    assert RefUpdate.from_dict(updates[0].as_dict()) == updates[0]


def test_parse_porcelain() -> None:
    out = ("To /x.git\n!\tHEAD:refs/heads/main\t[rejected] (non-fast-forward)\n"
           "*\tabc:refs/tags/t3\t[new tag]\nDone\n")
    assert parse_porcelain(out) == {"refs/heads/main": ("!", "[rejected] (non-fast-forward)"),
                                    "refs/tags/t3": ("*", "[new tag]")}


def test_parse_status_v2() -> None:
    text = ("# branch.oid 1234\n# branch.head stg\n1 .M N... 100644 100644 100644 a b src/app.py\n"
            "2 R. N... 100644 100644 100644 a b R100 new name.txt\told.txt\n"
            "u UU N... 100644 100644 100644 100644 a b c both.txt\n? junk\n")
    st = parse_status_v2(text)
    assert (st.branch, st.head, st.changed, st.untracked) == ("stg", "1234", ("src/app.py", "new name.txt",
                                                                            "both.txt"), 1)
    assert parse_status_v2("# branch.oid 1234\n# branch.head (detached)\n").branch is None


def _config(tmp_path: Path) -> Config:
    cfg = Config.model_validate({
        "project": "p", "environments": {"dev": {"branch": "dev"}},
        "repos": {"api": {"path": "api", "groups": ["backend"]}, "ws": {"path": "ws", "groups": ["backend"]},
                  "web": {"url": "git@example.com:o/web.git"}}})
    cfg._source = tmp_path / "shipyard.yaml"
    return cfg


def test_select_repos(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    assert [s.name for s in select_repos(cfg, tmp_path)] == ["api", "ws", "web"]
    assert [s.name for s in select_repos(cfg, tmp_path, only=["web,api"])] == ["api", "web"]
    assert [s.name for s in select_repos(cfg, tmp_path, group="backend", only=["ws"])] == ["ws"]
    web = select_repos(cfg, tmp_path, only=["web"])[0]
    assert web.managed and web.path == (tmp_path / ".shipyard" / "fleet" / "web.git").resolve()
    with pytest.raises(UsageError, match=r"unknown repo 'nope' \(known: api, ws, web\)"):
        select_repos(cfg, tmp_path, only=["nope"])
    with pytest.raises(UsageError, match="no repo is in group 'x'"):
        select_repos(cfg, tmp_path, group="x")


def test_for_each_bounds_concurrency_and_fails_fast() -> None:
    running, peak, seen = 0, 0, []

    async def work(name: str) -> RepoOutcome:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        seen.append(name)
        return RepoOutcome("failed" if name == "r1" else "ok")

    names = [f"r{i}" for i in range(8)]
    results = asyncio.run(for_each(names, work, jobs=3))
    assert peak == 3 and list(results) == names and results["r1"].status == "failed"
    results = asyncio.run(for_each(names, work, jobs=1, fail_fast=True))
    assert [results[n].status for n in names] == ["ok", "failed"] + ["skipped"] * 6
