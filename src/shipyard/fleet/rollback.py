"""`rollback --env ENV --to TAG`: put the env's branch of every repo back to what it was at TAG.

What "what it was" means per repo, in order of trust:
1. the promotion record that created TAG: every repo's branch tip right after it, including the repos
   that promotion skipped (they have no TAG, but their state at that moment is known);
2. the repo's own TAG;
3. the newest tag of the env's pattern that is not newer than TAG (the repo was not promoted then, so it
   still had what its previous deploy tag marks).
A repo where none applies is refused up front. The default moves the branch with a new commit whose tree
is the old one (history is kept, nothing is forced); `--force` points the branch at the old commit with a
force-with-lease push, only where `environments.ENV.allow_force` is true. Either way the env is then
frozen against promotion until `shipyard unfreeze`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from shipyard.errors import UsageError
from shipyard.fleet.context import FleetContext, Prepared, finish_prepare, gather_all, ready_and_fetch
from shipyard.fleet.inventory import RepoFacts, RepoSpec, commits_between, select_repos
from shipyard.fleet.plan import PromotionPlan, RestoreTarget, plan_rollback
from shipyard.fleet.tags import (
    free_time,
    parse_stamp,
    promotion_id,
    promotion_time,
    stamp,
    tag_name,
    tag_pattern,
    tag_stamp,
)
from shipyard.fleet.unfinished import check_no_unfinished
from shipyard.store import promotions as pq

KEPT_STATES = ("completed", "partial", "pushed")


def recorded_state(ctx: FleetContext, env: str, to: str) -> dict[str, str]:
    """repo -> the env branch's sha right after the promotion that created `to` (empty if none recorded)."""
    with ctx.store.session(readonly=True) as s:
        row = pq.find_promotion_by_tag(s, env, to)
        if row is None or row.state not in KEPT_STATES:
            return {}
        out: dict[str, str] = {}
        for r in pq.promotion_repos(s, row.id):
            sha = r.new_sha if r.result == "pushed" else r.old_sha if r.result == "skipped" else None
            if sha:
                out[r.repo] = sha
        return out


def resolve_target(facts: RepoFacts, recorded: dict[str, str], *, to: str, template: str | None,
                   env: str) -> RestoreTarget:
    """Where this repo goes back to (see the module docstring), without I/O."""
    if facts.repo in recorded:
        return RestoreTarget(recorded[facts.repo], None, "the promotion record")
    if to in facts.tags:
        return RestoreTarget(facts.tags[to], None, "its tag")
    when = tag_stamp(to, template, env)
    if when and template:
        rx = tag_pattern(template, env)
        older = sorted((m.group("ts"), name) for name in facts.tags
                       if (m := rx.fullmatch(name)) and m.group("ts") <= when)
        if older:
            name = older[-1][1]
            return RestoreTarget(facts.tags[name], None, f"earlier tag {name}")
    return RestoreTarget(None, None, f"no tag {to}, no earlier {env} tag, and no promotion record of it")


async def _trees(spec: RepoSpec, tip: str, target: RestoreTarget) -> RestoreTarget:
    if target.commit is None:
        return target
    out = (await spec.git.out("rev-parse", f"{tip}^{{tree}}", f"{target.commit}^{{tree}}")).split()
    return RestoreTarget(target.commit, out[1], target.found, tip_tree=out[0])


async def _plan(ctx: FleetContext, specs: Sequence[RepoSpec], env: str, targets: dict[str, RestoreTarget],
                facts: dict[str, RepoFacts], *, plan_id: str, ts: str, to: str, force: bool,
                message: str) -> PromotionPlan:
    e = ctx.config.environment(env)

    async def one(spec: RepoSpec) -> None:        # local reads only: no need to bound them by --jobs
        tip = facts[spec.name].tips[e.branch]
        target = targets[spec.name] = await _trees(spec, tip, targets[spec.name])
        if target.commit:
            commits, count = await commits_between(spec.git, tip, target.commit)
            facts[spec.name].ahead[(e.branch, target.commit)] = commits
            facts[spec.name].ahead_count[(e.branch, target.commit)] = count

    await asyncio.gather(*(one(spec) for spec in specs))
    tag = tag_name(e.tag, ts, env) if e.tag else None
    repos = plan_rollback(list(facts.values()), targets, plan_id=plan_id, branch=e.branch, to=to, force=force,
                          tag=tag, message=message)
    return PromotionPlan(plan_id, "rollback", None, env, (env,), ts, message or f"roll back {env} to {to}",
                         tuple(repos), tag=tag, extra={"branch": e.branch, "to": to, "mode": _mode(force)})


def _mode(force: bool) -> str:
    return "force" if force else "revert"


async def prepare_rollback(ctx: FleetContext, env: str, to: str, *, force: bool = False, message: str = "",
                           only: Sequence[str] = (), group: str | None = None) -> Prepared:
    """Plan restoring `env`'s branch in every repo to its state at tag `to`."""
    cfg: Any = ctx.config
    e = cfg.environment(env)
    if force and not getattr(e, "allow_force", False):
        raise UsageError(f"--force is not allowed for {env}: set environments.{env}.allow_force: true, "
                         "or roll back with a revert commit (the default, no --force)")
    check_no_unfinished(ctx.store, "rollback", None, env)
    when = promotion_time(cfg.timezone)
    plan_id, ts = promotion_id("rollback", when), stamp(when)
    specs = select_repos(cfg, ctx.root, only=only, group=group)
    await ready_and_fetch(ctx, specs)
    facts = await gather_all(ctx, specs, [e.branch], [])
    recorded = recorded_state(ctx, env, to)
    if not recorded and not any(to in f.tags for f in facts.values()):
        raise UsageError(f"no tag {to!r} in any repo and no promotion into {env} recorded it "
                         f"(see `git tag -l` or `shipyard history --promotions`)")
    targets = {name: resolve_target(f, recorded, to=to, template=e.tag, env=env) for name, f in facts.items()}
    when = free_time(when, e.tag, env, (t for f in facts.values() for t in f.tags))
    ts = stamp(when)
    plan = await _plan(ctx, specs, env, targets, facts, plan_id=plan_id, ts=ts, to=to, force=force,
                       message=message)
    return await finish_prepare(ctx, plan, specs, facts, when)


async def prepare_rollback_resume(ctx: FleetContext, plan_id: str, env: str, ts: str, message: str,
                                  todo: dict[str, Any], to: str) -> Prepared:
    """Finish a kept partial rollback: restore the recorded commits in the repos not pushed yet."""
    cfg: Any = ctx.config
    e = cfg.environment(env)
    force = any(u.get("lease") for row in todo.values() for u in (row.updates or []))
    specs = select_repos(cfg, ctx.root, only=list(todo)) if todo else []
    await ready_and_fetch(ctx, specs)
    facts = await gather_all(ctx, specs, [e.branch], [])
    already = {name: "already on origin (pushed before the interruption)" for name, row in todo.items()
               if row.new_sha and facts[name].tips.get(e.branch) == row.new_sha}
    targets = {name: RestoreTarget(row.source_sha, None, "the rollback record") for name, row in todo.items()}
    plan = await _plan(ctx, specs, env, targets, facts, plan_id=plan_id, ts=ts, to=to, force=force,
                       message=message)
    return await finish_prepare(ctx, plan, specs, facts, parse_stamp(ts, cfg.timezone), resume_of=plan_id,
                                already=already)
