"""`promote --resume ID`: finish a kept partial promotion, hotfix sync or tag rollback.

It sits above `fleet.promote` and `fleet.rollback` (it needs the planners of both), so those two never
import each other. Like them it only prepares: `fleet.execute` pushes.
"""

from __future__ import annotations

from shipyard.errors import UsageError
from shipyard.fleet.context import FleetContext, Prepared, finish_prepare, gather_all, ready_and_fetch
from shipyard.fleet.freeze import check_not_frozen
from shipyard.fleet.inventory import select_repos
from shipyard.fleet.plan import PromotionPlan, RepoPlan, hotfix_pairs, plan_hotfix, plan_promotion
from shipyard.fleet.promote import hotfix_chain
from shipyard.fleet.rollback import prepare_rollback_resume
from shipyard.fleet.tags import parse_stamp, tag_name
from shipyard.fleet.unfinished import UNFINISHED
from shipyard.store import promotions as pq

RESUMABLE = UNFINISHED


async def prepare_resume(ctx: FleetContext, plan_id: str) -> Prepared:
    """Finish a kept partial promotion: redo every repo that is not pushed yet, with what it started with
    (the same source commits, the same tag name); a repo whose remote already has the planned new sha
    (a crash after its push) is only marked pushed."""
    cfg = ctx.config
    with ctx.store.session(readonly=True) as s:
        row = pq.get_promotion(s, plan_id)
        if row is None:
            raise UsageError(f"no promotion {plan_id!r} (see `shipyard history --promotions`)")
        rows = pq.promotion_repos(s, plan_id)
        kind, source_env, target_env, ts, message, state = (row.kind, row.source_env, row.target_env, row.stamp,
                                                            row.message, row.state)
        to = row.rollback_to or ""
    if state not in RESUMABLE:
        raise UsageError(f"promotion {plan_id} is {state}; only a partial one can be resumed "
                         "(start a new promotion instead)")
    todo = {r.repo: r for r in rows if r.result not in ("pushed", "skipped", "compensation_failed")}
    if kind == "rollback":
        return await prepare_rollback_resume(ctx, plan_id, target_env, ts, message, todo, to)
    unknown = [name for name in todo if name not in cfg.repos]
    if unknown:
        raise UsageError(f"cannot resume {plan_id}: repo {', '.join(unknown)} is no longer configured")
    when = parse_stamp(ts, cfg.timezone)
    specs = select_repos(cfg, ctx.root, only=list(todo)) if todo else []
    if kind == "hotfix":
        envs = hotfix_chain(cfg)
        check_not_frozen(cfg, ctx.store, envs[1:])
        chain = [cfg.environment(e).branch for e in envs]
        await ready_and_fetch(ctx, specs)
        facts = await gather_all(ctx, specs, chain, hotfix_pairs(chain))
        repos = plan_hotfix(list(facts.values()), plan_id=plan_id, chain=chain, message=message)
        plan = PromotionPlan(plan_id, "hotfix", envs[0], envs[1], tuple(envs[1:]), ts, message, tuple(repos),
                             extra={"branch": chain[1], "chain": " ".join(chain)})
        return await finish_prepare(ctx, plan, specs, facts, when, resume_of=plan_id)
    assert source_env is not None
    check_not_frozen(cfg, ctx.store, [target_env])
    src, dst = cfg.environment(source_env), cfg.environment(target_env)
    await ready_and_fetch(ctx, specs)
    pinned = {name: r.source_sha for name, r in todo.items() if r.source_sha}
    pairs = {name: [(pinned.get(name, src.branch), dst.branch)] for name in todo}
    facts = await gather_all(ctx, specs, [src.branch, dst.branch], pairs)
    already = {name: "already on origin (pushed before the interruption)" for name, r in todo.items()
               if r.new_sha and facts[name].tips.get(dst.branch) == r.new_sha}
    tag = tag_name(dst.tag, ts, target_env) if dst.tag else None       # the recorded stamp: the same name
    repos = [p if p.repo not in already else RepoPlan(p.repo, "skip", reason=already[p.repo])
             for p in plan_promotion(list(facts.values()), plan_id=plan_id, source_branch=src.branch,
                                     target_branch=dst.branch, tag=tag, message=message, pinned=pinned)]
    plan = PromotionPlan(plan_id, "promote", source_env, target_env, (target_env,), ts, message, tuple(repos),
                         tag=tag, extra={"branch": dst.branch, "source_branch": src.branch})
    return await finish_prepare(ctx, plan, specs, facts, when, resume_of=plan_id, already=already)
