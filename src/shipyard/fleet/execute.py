"""Push a prepared plan, all or nothing, and record every step of it.

1. The promotion and every repo's planned old -> new are recorded (state `planned`) before the first push.
2. Each repo's refs go in one atomic push, `jobs` at a time; each result is recorded as it comes.
3. All pushed: local refs follow where safe, state `completed` (a rollback then freezes its env).
   A push failed: unless --keep-partial, no further push starts and the repos already pushed are put back
   (force-with-lease to the recorded old sha, tag deleted): state `compensated`, or `partial` when a repo
   could not be put back. With --keep-partial the rest is still pushed and the state is `partial`;
   `shipyard promote --resume ID` finishes it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from shipyard.fleet.build import RefUpdate
from shipyard.fleet.context import FleetContext, Prepared
from shipyard.fleet.freeze import freeze
from shipyard.fleet.parallel import RepoOutcome, for_each
from shipyard.fleet.push import compensate, push, update_local_refs
from shipyard.notify.outbox import record_event
from shipyard.store import promotions as pq


@dataclass
class RepoReport:
    """Where one repo ended up; `result` is also what the store records for it."""

    repo: str
    result: str       # pushed | skipped | compensated | rejected | failed | not_pushed | compensation_failed
    detail: str = ""
    branch: str | None = None
    old: str | None = None
    new: str | None = None
    tag: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "result": self.result, "detail": self.detail, "branch": self.branch,
                "old_sha": self.old, "new_sha": self.new, "tag": self.tag, "notes": self.notes}


@dataclass
class Outcome:
    id: str
    kind: str
    state: str
    repos: list[RepoReport]
    changed: dict[str, dict[str, str]] = field(default_factory=dict)    # env -> repo -> new sha

    def where(self, *results: str) -> list[str]:
        return [r.repo for r in self.repos if r.result in results]

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state,
                "repos": [r.as_dict() for r in self.repos], "changed": self.changed}


def _primary(prepared: Prepared, repo: str) -> str:
    """The branch a repo's record is about: the target env's, or the first one this repo moves."""
    branch = str(prepared.plan.extra.get("branch", ""))
    plan = next(r for r in prepared.plan.repos if r.repo == repo)
    built = prepared.built.get(repo)
    moved = [u.short for u in built.updates if u.ref.startswith("refs/heads/")] if built else []
    if branch in moved or not moved:
        return branch or (plan.branches[0] if plan.branches else "")
    return moved[0]


def planned_reports(prepared: Prepared) -> list[RepoReport]:
    """One report per repo as planned: pending (to push), skipped, or already pushed (resume)."""
    out: list[RepoReport] = []
    for plan in prepared.plan.repos:
        branch = _primary(prepared, plan.repo)
        tips = prepared.facts[plan.repo].tips if plan.repo in prepared.facts else {}
        built = prepared.built.get(plan.repo)
        if plan.repo in prepared.already_pushed:
            out.append(RepoReport(plan.repo, "pushed", prepared.already_pushed[plan.repo], branch,
                                  None, tips.get(branch)))
        elif plan.action == "update" and built is not None and built.updates:
            head = next((u for u in built.updates if u.ref == f"refs/heads/{branch}"), None)
            out.append(RepoReport(plan.repo, "pending", "", branch, head.old if head else tips.get(branch),
                                  head.new if head else tips.get(branch), built.tag))
        else:
            reason = plan.reason or "nothing to do"
            out.append(RepoReport(plan.repo, "skipped", reason, branch, tips.get(branch), tips.get(branch)))
    return out


def record_plan(ctx: FleetContext, prepared: Prepared, reports: list[RepoReport]) -> None:
    """Write the promotion and its repos as planned (or, resuming, update the rows being redone)."""
    plan = prepared.plan
    rows: list[dict[str, Any]] = []
    for rep in reports:
        built = prepared.built.get(rep.repo)
        rp = next(r for r in plan.repos if r.repo == rep.repo)
        rows.append({"repo": rep.repo, "branch": rep.branch, "source_sha": rp.source_sha, "old_sha": rep.old,
                     "new_sha": rep.new, "tag": rep.tag, "result": rep.result, "detail": rep.detail,
                     "updates": [u.as_dict() for u in built.updates] if built and rep.result == "pending" else []})
    with ctx.store.session() as s:
        if prepared.resume_of is None:
            pq.create_promotion(s, promotion_id=plan.id, kind=plan.kind, source_env=plan.source_env,
                                target_env=plan.target_env, stamp=plan.stamp, actor=ctx.actor,
                                message=plan.message, repos=rows, rollback_to=plan.extra.get("to"))
            return
        for row in rows:
            if row["result"] == "pending" or row["repo"] in prepared.already_pushed:
                pq.set_repo_result(s, plan.id, row["repo"], row["result"], detail=row["detail"],
                                   **{k: row[k] for k in ("old_sha", "new_sha", "tag", "updates", "source_sha")
                                      if row[k] is not None})


def record_refused(ctx: FleetContext, prepared: Prepared) -> None:
    """Record a promotion stopped before any push (conflicts, refusals) as `failed`, for the audit trail."""
    if prepared.resume_of is not None:
        return
    problems = dict(prepared.problems())
    reports = planned_reports(prepared)
    for rep in reports:
        if rep.repo in problems:
            built = prepared.built.get(rep.repo)
            rep.result = "conflict" if built is not None and built.problem else "refused"
            rep.detail = problems[rep.repo]
        elif rep.result == "pending":
            rep.result, rep.detail = "not_pushed", "not pushed: another repo cannot be merged"
    record_plan(ctx, prepared, reports)
    with ctx.store.session() as s:
        pq.set_promotion_state(s, prepared.plan.id, "failed",
                               detail=f"refused before pushing: {', '.join(sorted(problems))}")


def _set(ctx: FleetContext, plan_id: str, rep: RepoReport, result: str, detail: str) -> None:
    rep.result, rep.detail = result, detail
    with ctx.store.session() as s:
        pq.set_repo_result(s, plan_id, rep.repo, result, detail=detail)


async def execute(ctx: FleetContext, prepared: Prepared, *, keep_partial: bool = False) -> Outcome:
    """Push the prepared plan (see the module docstring); never raises for a failed push: the Outcome
    says where each repo is and the caller decides the exit code."""
    prepared.check()
    plan = prepared.plan
    reports = planned_reports(prepared)
    by_repo = {r.repo: r for r in reports}
    record_plan(ctx, prepared, reports)

    async def push_one(name: str) -> RepoOutcome:
        updates = prepared.built[name].updates
        result = await push(prepared.specs[name].git, updates)
        _set(ctx, plan.id, by_repo[name], "pushed" if result.ok else ("rejected" if result.rejected else "failed"),
             result.detail)
        return RepoOutcome("ok" if result.ok else "failed", result.detail)

    pending = [r.repo for r in reports if r.result == "pending"]
    pushes = await for_each(pending, push_one, jobs=ctx.jobs, fail_fast=not keep_partial,
                            listener=lambda repo, st, d: ctx.note(repo, f"push:{st}", d),
                            not_started="not pushed: another repo's push failed")
    for name, out in pushes.items():
        if out.status == "skipped":
            _set(ctx, plan.id, by_repo[name], "not_pushed", out.detail)
    failed = [n for n, o in pushes.items() if o.status == "failed"]
    if failed and not keep_partial:
        await _compensate(ctx, prepared, [r for r in reports if r.result == "pushed" and r.repo in pushes])
    stayed = [rep for rep in reports if rep.result == "pushed" and rep.repo in pushes]
    notes = await asyncio.gather(*(_local_refs(ctx, prepared, rep.repo) for rep in stayed))
    for rep, found in zip(stayed, notes, strict=True):
        rep.notes = found
    state = "partial" if failed and prepared.resume_of else _final_state(reports, failed)
    detail = None
    if state == "completed" and plan.kind == "rollback":
        reason = f"rolled back to {plan.extra.get('to', '?')}"
        freeze(ctx.store, plan.target_env, reason=reason, actor=ctx.actor, promotion_id=plan.id)
        detail = f"{plan.target_env} frozen"
    with ctx.store.session() as s:
        pq.set_promotion_state(s, plan.id, state, detail=detail)
        # Same transaction: the promotion's end and its notification are recorded together or not at all.
        pushed = [r.repo for r in reports if r.result == "pushed"]
        record_event(s, getattr(ctx.config, "notifications", None), f"promotion.{state}", service="*",
                     env=plan.target_env, message=f"{plan.kind} {plan.source_env or ''}→{plan.target_env}: "
                     f"{state}, {len(pushed)} repo(s) moved", data={
                         "promotion": plan.id, "kind": plan.kind, "actor": ctx.actor, "repos": pushed,
                         "source_env": plan.source_env, "target_env": plan.target_env})
    changed = _changed(ctx, prepared, reports)
    if prepared.resume_of and state == "completed":
        _add_earlier_pushes(ctx, prepared, changed, {r.repo for r in reports})
    return Outcome(plan.id, plan.kind, state, reports, changed)


async def _compensate(ctx: FleetContext, prepared: Prepared, pushed: list[RepoReport]) -> None:
    """Put back every repo already pushed, in parallel; record each result."""
    async def undo(name: str) -> RepoOutcome:
        result = await compensate(prepared.specs[name].git, prepared.built[name].updates)
        if result.ok:
            tag = ", tag deleted" if prepared.built[name].tag else ""
            _set(ctx, prepared.plan.id, pushed_by[name], "compensated",
                 f"put back to {(pushed_by[name].old or '')[:8]}{tag}")
            return RepoOutcome("ok", "put back")
        _set(ctx, prepared.plan.id, pushed_by[name], "compensation_failed",
             f"could not be put back: {result.detail}; it stays pushed")
        return RepoOutcome("failed", result.detail)

    pushed_by = {r.repo: r for r in pushed}
    await for_each(list(pushed_by), undo, jobs=ctx.jobs,
                   listener=lambda repo, st, d: ctx.note(repo, f"undo:{st}", d))


async def _local_refs(ctx: FleetContext, prepared: Prepared, name: str) -> list[str]:
    ready = ctx.ready.get(name)
    try:
        return await update_local_refs(prepared.specs[name], prepared.built[name].updates,
                                       ready.state if ready else None)
    except Exception as err:  # the push is done and recorded; local refs are a courtesy
        return [f"local refs not updated ({err})"]


def _final_state(reports: list[RepoReport], failed: list[str]) -> str:
    if not failed:
        return "completed"
    still_pushed = [r for r in reports if r.result in ("pushed", "compensation_failed")]
    if still_pushed:
        return "partial"
    return "compensated" if any(r.result == "compensated" for r in reports) else "failed"


def _changed(ctx: FleetContext, prepared: Prepared, reports: list[RepoReport]) -> dict[str, dict[str, str]]:
    """env -> repo -> new sha of that env's branch, for repos whose push went through (and stayed)."""
    out: dict[str, dict[str, str]] = {}
    branches = {env: ctx.config.environments[env].branch for env in prepared.plan.target_envs}
    for rep in reports:
        if rep.result != "pushed" or rep.repo not in prepared.built:
            continue
        updates: list[RefUpdate] = prepared.built[rep.repo].updates
        for env, branch in branches.items():
            for u in updates:
                if u.ref == f"refs/heads/{branch}" and u.new:
                    out.setdefault(env, {})[rep.repo] = u.new
    return out


def _add_earlier_pushes(ctx: FleetContext, prepared: Prepared, changed: dict[str, dict[str, str]],
                        redone: set[str]) -> None:
    """A resumed promotion deploys what its first run pushed too (a partial one deployed nothing)."""
    branches = {ctx.config.environments[env].branch: env for env in prepared.plan.target_envs}
    with ctx.store.session(readonly=True) as s:
        rows = [(r.repo, list(r.updates or [])) for r in pq.promotion_repos(s, prepared.plan.id)
                if r.result == "pushed" and r.repo not in redone]
    for repo, updates in rows:
        for u in updates:
            env = branches.get(str(u.get("ref", "")).removeprefix("refs/heads/"))
            if env and u.get("new"):
                changed.setdefault(env, {})[repo] = u["new"]
