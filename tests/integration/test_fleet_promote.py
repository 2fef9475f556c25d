"""Promotions over real repos with bare remotes, driven through the fleet API (the CLI has its own tests).

Covers: a clean promotion over 8 repos (with repos that have nothing to promote), a conflict in 1 of 8,
a push rejected half-way (compensated; and --keep-partial then --resume), refusals (dirty tree, detached
HEAD, missing branch, not a repo), hotfix sync, tag rollback (revert and force) with the freeze.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import GIT_ENV, Driver, git, make_fleet

from shipyard.errors import EnvironmentFrozen, PromotionConflict, ReposNotReady, UnfinishedPromotion, UsageError
from shipyard.fleet.context import Prepared
from shipyard.fleet.execute import execute, planned_reports, record_plan
from shipyard.fleet.freeze import unfreeze
from shipyard.fleet.promote import prepare_hotfix
from shipyard.fleet.push import push
from shipyard.fleet.resume import prepare_resume
from shipyard.fleet.rollback import prepare_rollback


@pytest.fixture
def fleet8(tmp_path: Path) -> Iterator[Driver]:
    d = Driver(make_fleet(tmp_path / "f", 8))
    yield d
    d.store.close()


@pytest.fixture
def fleet3(tmp_path: Path) -> Iterator[Driver]:
    d = Driver(make_fleet(tmp_path / "f", 3))
    yield d
    d.store.close()


def test_clean_promotion_over_eight_repos(fleet8: Driver) -> None:
    f = fleet8.fleet
    changed = f.names[:6]                      # svc6 and svc7 have nothing to promote
    dev_tips = {n: f.commit(n, "dev", {f"feature-{n}.txt": n}, f"feature for {n}") for n in changed}
    old_stg = {n: f.sha(n, "stg") for n in f.names}
    git(f.clones["svc1"], "checkout", "--quiet", "stg")          # a clean checkout of stg: fast-forwarded after
    git(f.clones["svc2"], "branch", "--quiet", "-f", "stg", git(f.clones["svc2"], "commit-tree", "-p", "stg", "-m",
                                                                 "local only", "stg^{tree}"))   # diverged: left
    local_stg2 = git(f.clones["svc2"], "rev-parse", "stg")
    local_before = f.local_state()

    outcome = fleet8.promote(message="release 7")

    assert outcome.state == "completed"
    assert outcome.where("pushed") == changed and outcome.where("skipped") == ["svc6", "svc7"]
    tags = {r.tag for r in outcome.repos if r.result == "pushed"}
    assert len(tags) == 1 and next(iter(tags)).startswith("stg-deploy-")             # one timestamp for all
    tag = next(iter(tags))
    for n in changed:
        new = f.sha(n, "stg")
        parents = git(f.origins[n], "rev-list", "--parents", "-n1", new).split()[1:]
        assert parents == [old_stg[n], dev_tips[n]], "a --no-ff merge of dev into stg"
        assert "release 7" in git(f.origins[n], "log", "-1", "--format=%B", new)
        assert tag in f.tags(n) and git(f.origins[n], "rev-parse", f"{tag}^{{commit}}") == new
        assert git(f.origins[n], "cat-file", "-t", tag) == "tag"                      # annotated
    for n in ("svc6", "svc7"):
        assert f.sha(n, "stg") == old_stg[n] and not f.tags(n)
    # the user's clones: untouched but for the tag, the fast-forwarded stg branches and the checked-out one
    assert git(f.clones["svc1"], "rev-parse", "HEAD") == f.sha("svc1", "stg")
    assert git(f.clones["svc1"], "status", "--porcelain") == ""
    assert git(f.clones["svc0"], "rev-parse", "refs/heads/stg") == f.sha("svc0", "stg")
    assert f.local_state()["svc7"] == local_before["svc7"]
    assert git(f.clones["svc2"], "rev-parse", "stg") == local_stg2
    assert next(r.notes for r in outcome.repos if r.repo == "svc2") == [
        "local stg left as is (it has commits the remote does not)"]
    state, repos = fleet8.record(outcome.id)
    assert state == "completed" and [repos[n] for n in f.names] == ["pushed"] * 6 + ["skipped"] * 2
    assert outcome.changed == {"stg": {n: f.sha(n, "stg") for n in changed}}
    # a second run finds nothing to promote anywhere
    again = fleet8.prepare()
    assert not again.to_push() and {r.action for r in again.plan.repos} == {"skip"}


def test_conflict_in_one_of_eight_pushes_nothing(fleet8: Driver) -> None:
    f = fleet8.fleet
    for n in f.names:
        f.commit(n, "dev", {"app.txt": f"dev change {n}\n"})
    f.commit("svc3", "stg", {"app.txt": "hotfix straight on stg\n"})               # the conflict
    f.commit("svc5", "stg", {"other.txt": "unrelated"})                             # merges fine
    remote_before, local_before = f.remote_state(), f.local_state()

    prepared = fleet8.prepare()
    problems = prepared.problems()
    assert problems == [("svc3", "merging dev into stg conflicts in app.txt")]
    assert prepared.built["svc3"].conflicts == ["app.txt"]
    with pytest.raises(PromotionConflict, match=r"nothing was pushed: 1 of 8 repos cannot be promoted \(svc3\)"):
        fleet8.execute(prepared)
    assert f.remote_state() == remote_before
    assert f.local_state() == local_before, "merges were made away from the working trees"


def _prepare_then_someone_pushes(d: Driver, victim: str) -> Prepared:
    f = d.fleet
    for n in f.names:
        f.commit(n, "dev", {f"{n}.txt": "new"})
    prepared = d.prepare(jobs=1)
    f.commit(victim, "stg", {"meanwhile.txt": "someone else"})                     # after our fetch
    return prepared


def test_push_rejected_half_way_puts_back_the_pushed_repos(fleet8: Driver) -> None:
    f = fleet8.fleet
    old_stg = {n: f.sha(n, "stg") for n in f.names}
    prepared = _prepare_then_someone_pushes(fleet8, "svc4")
    meanwhile = f.sha("svc4", "stg")

    outcome = fleet8.execute(prepared, jobs=1)                       # pushes in order: svc0..svc3 go first

    assert outcome.state == "compensated"
    results = {r.repo: r.result for r in outcome.repos}
    assert [results[n] for n in f.names] == ["compensated"] * 4 + ["rejected"] + ["not_pushed"] * 3
    assert "stg" in next(r.detail for r in outcome.repos if r.repo == "svc4")
    for n in f.names:
        assert f.sha(n, "stg") == (meanwhile if n == "svc4" else old_stg[n])
        assert not f.tags(n), "the tags of the put-back repos are deleted"
        assert git(f.clones[n], "rev-parse", "refs/remotes/origin/stg") in (old_stg[n], meanwhile)
    assert fleet8.record(outcome.id) == ("compensated", results)


def test_keep_partial_then_resume(fleet8: Driver) -> None:
    f = fleet8.fleet
    prepared = _prepare_then_someone_pushes(fleet8, "svc2")

    outcome = fleet8.execute(prepared, jobs=1, keep_partial=True)

    assert outcome.state == "partial"
    assert outcome.where("rejected") == ["svc2"] and len(outcome.where("pushed")) == 7
    tag = prepared.plan.tag
    assert tag and all(tag in f.tags(n) for n in f.names if n != "svc2") and tag not in f.tags("svc2")

    resumed = asyncio.run(prepare_resume(fleet8.ctx(), outcome.id))
    assert [r.repo for r in resumed.plan.repos] == ["svc2"]
    final = fleet8.execute(resumed)
    assert final.state == "completed" and final.id == outcome.id
    assert final.changed == {"stg": {n: f.sha(n, "stg") for n in f.names}}, "deploy all that moved, not only svc2"
    assert tag in f.tags("svc2")
    new = f.sha("svc2", "stg")
    assert "meanwhile.txt" in git(f.origins["svc2"], "ls-tree", "--name-only", new)       # kept their push
    assert git(f.origins["svc2"], "merge-base", "--is-ancestor", prepared.plan.repos[2].source_sha or "", new) == ""
    state, repos = fleet8.record(outcome.id)
    assert state == "completed" and set(repos.values()) == {"pushed"}
    with pytest.raises(UsageError, match="is completed; only a partial one can be resumed"):
        asyncio.run(prepare_resume(fleet8.ctx(), outcome.id))


@pytest.mark.parametrize("problem", ["dirty", "detached", "no-branch", "not-a-repo", "no-remote"])
def test_refused_up_front_changes_nothing(fleet3: Driver, problem: str) -> None:
    f = fleet3.fleet
    for n in f.names:
        f.commit(n, "dev", {"x.txt": n})
    bad = f.clones["svc1"]
    expected = {"dirty": "working tree has 1 uncommitted change(s) (README)",
                "detached": "detached HEAD at", "no-branch": "branch stg not on origin",
                "not-a-repo": "is not a git repository", "no-remote": "no remote 'origin'"}[problem]
    if problem == "dirty":
        (bad / "README").write_text("edited\n")
    elif problem == "detached":
        git(bad, "checkout", "--quiet", "--detach")
    elif problem == "no-branch":
        git(f.origins["svc1"], "branch", "-D", "stg")
    elif problem == "no-remote":
        git(bad, "remote", "remove", "origin")
    else:
        git(bad, "rev-parse", "--git-dir")
        import shutil
        shutil.rmtree(bad / ".git")
    remote_before = f.remote_state()

    with pytest.raises(ReposNotReady) as info:
        fleet3.prepare()

    assert [repo for repo, _ in info.value.details] == ["svc1"]
    assert expected in info.value.details[0][1]
    assert str(info.value).startswith("nothing changed: 1 of 3 repos")
    assert f.remote_state() == remote_before


def test_hotfix_sync(fleet3: Driver) -> None:
    f = fleet3.fleet
    f.commit("svc0", "dev", {"feature.txt": "wip"})                     # dev is ahead with its own work
    fix = f.commit("svc0", "main", {"app.txt": "hotfix\n"}, "hotfix: timeout")
    f.commit("svc1", "main", {"fix.txt": "fix"}, "hotfix 2")

    outcome = asyncio.run(execute(fleet3.ctx(), asyncio.run(prepare_hotfix(fleet3.ctx()))))

    assert outcome.state == "completed" and outcome.where("pushed") == ["svc0", "svc1"]
    assert outcome.where("skipped") == ["svc2"]
    for n in ("svc0", "svc1"):
        for branch in ("stg", "dev"):
            assert git(f.origins[n], "merge-base", "--is-ancestor", f.sha(n, "main"), f.sha(n, branch)) == ""
    assert f.sha("svc0", "stg") == fix, "stg was only behind main: a fast-forward, no merge noise"
    assert "feature.txt" in git(f.origins["svc0"], "ls-tree", "--name-only", f.sha("svc0", "dev"))
    assert set(outcome.changed) == {"stg", "dev"}
    again = asyncio.run(prepare_hotfix(fleet3.ctx()))
    assert not again.to_push()


def test_tag_rollback_freezes_until_unfreeze(fleet3: Driver) -> None:
    f = fleet3.fleet
    for n in f.names:
        f.commit(n, "dev", {"app.txt": "v2\n"})
    fleet3.promote()
    first = fleet3.promote("stg", "prod")
    good_tag = next(r.tag for r in first.repos if r.tag)
    good = {n: f.sha(n, "main") for n in f.names}
    f.commit("svc0", "dev", {"app.txt": "v3 (bad)\n"})
    fleet3.promote()
    bad = fleet3.promote("stg", "prod")
    assert bad.where("pushed") == ["svc0"]
    bad_tip = f.sha("svc0", "main")

    prepared = asyncio.run(prepare_rollback(fleet3.ctx(), "prod", good_tag))
    assert [r.action for r in prepared.plan.repos] == ["update", "skip", "skip"]
    outcome = fleet3.execute(prepared)

    assert outcome.state == "completed"
    assert f.tree("svc0", f.sha("svc0", "main")) == f.tree("svc0", good["svc0"])
    assert git(f.origins["svc0"], "rev-parse", f"{f.sha('svc0', 'main')}^") == bad_tip, "a revert commit on top"
    with pytest.raises(EnvironmentFrozen, match=rf"prod is frozen by {outcome.id} \(rolled back to {good_tag}"):
        fleet3.prepare("stg", "prod")
    assert unfreeze(fleet3.ctx().config, fleet3.store, "prod", actor="me") == [outcome.id]
    assert unfreeze(fleet3.ctx().config, fleet3.store, "prod", actor="me") == []
    # A revert keeps the bad commits in main's history: promoting stg again does not bring them back
    # (git sees them as merged); bringing them back takes a revert of the revert, on dev.
    assert fleet3.prepare("stg", "prod").to_push() == []


def test_forced_rollback_and_where_force_is_not_allowed(fleet3: Driver) -> None:
    f = fleet3.fleet
    f.commit("svc1", "stg", {"app.txt": "v2\n"})
    first = fleet3.promote("stg", "prod")
    good_tag = next(r.tag for r in first.repos if r.tag)
    good = f.sha("svc1", "main")
    f.commit("svc1", "stg", {"app.txt": "v3\n"})
    fleet3.promote("stg", "prod")

    with pytest.raises(UsageError, match="--force is not allowed for stg"):
        asyncio.run(prepare_rollback(fleet3.ctx(), "stg", good_tag, force=True))
    outcome = fleet3.execute(asyncio.run(prepare_rollback(fleet3.ctx(), "prod", good_tag, force=True)))
    assert outcome.state == "completed" and outcome.where("pushed") == ["svc1"]
    assert f.sha("svc1", "main") == good, "force-with-lease back to the tagged commit itself"
    with pytest.raises(EnvironmentFrozen):
        fleet3.prepare("stg", "prod")
    unfreeze(fleet3.ctx().config, fleet3.store, "prod", actor="me")
    assert fleet3.prepare("stg", "prod").to_push() == ["svc1"], "after a reset the bad commit would come back"
    with pytest.raises(UsageError, match="no tag 'deploy-19990101-000000' in any repo"):
        asyncio.run(prepare_rollback(fleet3.ctx(), "prod", "deploy-19990101-000000"))


def test_url_only_repo_uses_a_workspace_of_its_own(fleet3: Driver, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():          # shipyard's own bare workspace has no user.name: use the env
        monkeypatch.setenv(key, value)
    f = fleet3.fleet
    f.write_config(url_only=["svc2"])
    f.commit("svc2", "dev", {"a.txt": "a"})
    outcome = fleet3.promote()
    assert outcome.where("pushed") == ["svc2"]
    assert (f.root / ".shipyard" / "fleet" / "svc2.git" / "HEAD").is_file()
    assert git(f.origins["svc2"], "rev-list", "--count", "dev..stg") == "1"


def test_rollback_kept_partial_then_resumed(fleet3: Driver) -> None:
    f = fleet3.fleet
    for n in f.names:
        f.commit(n, "stg", {"app.txt": "v2\n"})
    good_tag = next(r.tag for r in fleet3.promote("stg", "prod").repos if r.tag)
    good = {n: f.tree(n, f.sha(n, "main")) for n in f.names}
    for n in f.names:
        f.commit(n, "stg", {"app.txt": "v3\n"})
    fleet3.promote("stg", "prod")
    prepared = asyncio.run(prepare_rollback(fleet3.ctx(1), "prod", good_tag))
    urgent = f.commit("svc1", "main", {"urgent.txt": "someone's hotfix"})    # after our fetch

    outcome = fleet3.execute(prepared, jobs=1, keep_partial=True)
    assert outcome.state == "partial" and outcome.where("rejected") == ["svc1"]
    # half rolled back: neither a promotion into prod nor another rollback of it starts before this one ends
    with pytest.raises(UnfinishedPromotion, match=f"{outcome.id} \\(rollback prod\\) is partial"):
        fleet3.prepare("stg", "prod")
    with pytest.raises(UnfinishedPromotion):
        asyncio.run(prepare_rollback(fleet3.ctx(1), "prod", good_tag))
    final = fleet3.execute(asyncio.run(prepare_resume(fleet3.ctx(), outcome.id)))
    assert final.state == "completed"
    # the tree is the tag's again everywhere; their commit stays in the history, under the revert
    assert all(f.tree(n, f.sha(n, "main")) == good[n] for n in f.names)
    assert git(f.origins["svc1"], "merge-base", "--is-ancestor", urgent, f.sha("svc1", "main")) == ""
    with pytest.raises(EnvironmentFrozen):
        fleet3.prepare("stg", "prod")


def test_resume_after_a_crash_between_pushes(fleet3: Driver) -> None:
    """The process died after recording the plan and pushing svc0 only: resume sees svc0's planned sha on
    the remote (marks it pushed without pushing) and pushes the others."""
    f = fleet3.fleet
    for n in f.names:
        f.commit(n, "dev", {"x.txt": n})
    prepared = fleet3.prepare()
    ctx = fleet3.ctx()
    record_plan(ctx, prepared, planned_reports(prepared))                        # what execute writes first
    assert asyncio.run(push(prepared.specs["svc0"].git, prepared.built["svc0"].updates)).ok
    assert fleet3.record(prepared.plan.id) == ("planned", dict.fromkeys(f.names, "pending"))

    time.sleep(1.1)                    # a later second: the rebuilt merges must still be the same objects
    resumed = asyncio.run(prepare_resume(ctx, prepared.plan.id))
    assert resumed.already_pushed == {"svc0": "already on origin (pushed before the interruption)"}
    outcome = fleet3.execute(resumed)
    assert outcome.state == "completed"
    assert fleet3.record(prepared.plan.id) == ("completed", dict.fromkeys(f.names, "pushed"))
    assert all(f.sha(n, "stg") == prepared.built[n].tips["stg"] for n in f.names)


def test_a_completed_promotion_queues_its_notification(fleet3: Driver) -> None:
    f = fleet3.fleet
    with f.config_path.open("a") as fh:
        fh.write("notifications:\n"
                 "  channels:\n"
                 "    releases: {type: webhook, url: 'http://127.0.0.1:9/hook'}\n"
                 "  routes:\n"
                 "    - {events: ['promotion.*'], to: [releases]}\n")
    f.commit("svc0", "dev", {"feature.txt": "x"}, "feature")
    outcome = fleet3.promote(message="release 8")
    assert outcome.state == "completed"
    from shipyard.store import events as eq
    from shipyard.store import outbox as oq
    with fleet3.store.session() as s:
        [event] = eq.list_events(s, kind="promotion.*", limit=None)
        rows = oq.all_rows(s)
    assert event.kind == "promotion.completed" and event.env == "stg"
    assert event.data["repos"] == ["svc0"] and event.data["promotion"] == outcome.id
    assert [(r.event_id, r.channel, r.state) for r in rows] == [(event.id, "releases", "pending")]
