"""`promote SOURCE TARGET` and `hotfix sync`: from the config to a Prepared plan.

Each function runs the shared safe prefix (check every repo, fetch every repo, gather facts), asks the
pure planner for the plan and builds it into objects; nothing is pushed here. `fleet.execute` pushes.
Finishing a kept partial promotion (`promote --resume ID`) is `fleet.resume`, which sits above this
module and `fleet.rollback` (it resumes either kind), so neither of them imports the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shipyard.errors import UsageError
from shipyard.fleet.context import FleetContext, Prepared, finish_prepare, gather_all, ready_and_fetch
from shipyard.fleet.freeze import check_not_frozen
from shipyard.fleet.inventory import select_repos
from shipyard.fleet.plan import PromotionPlan, hotfix_pairs, plan_hotfix, plan_promotion
from shipyard.fleet.tags import free_time, promotion_id, promotion_time, stamp, tag_name
from shipyard.fleet.unfinished import check_no_unfinished


def promotion_envs(cfg: Any, source_env: str, target_env: str) -> None:
    """Refuse a promotion the config does not describe (`prod` is promoted from `stg`, not `dev`)."""
    src, dst = cfg.environment(source_env), cfg.environment(target_env)
    if dst.promote_from != source_env:
        hint = f"it is promoted from {dst.promote_from}" if dst.promote_from else "it has no promote_from"
        raise UsageError(f"cannot promote {source_env} to {target_env}: {hint} (environments.{target_env})")
    if src.branch == dst.branch:
        raise UsageError(f"{source_env} and {target_env} use the same branch {src.branch!r}")


async def prepare_promotion(ctx: FleetContext, source_env: str, target_env: str, *, message: str = "",
                            only: Sequence[str] = (), group: str | None = None) -> Prepared:
    """Plan merging SOURCE's branch into TARGET's (--no-ff) in every repo that has something to promote."""
    cfg = ctx.config
    promotion_envs(cfg, source_env, target_env)
    check_not_frozen(cfg, ctx.store, [target_env])
    check_no_unfinished(ctx.store, "promote", source_env, target_env)
    src, dst = cfg.environment(source_env), cfg.environment(target_env)
    when = promotion_time(cfg.timezone)
    plan_id, ts = promotion_id("promote", when), stamp(when)
    specs = select_repos(cfg, ctx.root, only=only, group=group)
    await ready_and_fetch(ctx, specs)
    facts = await gather_all(ctx, specs, [src.branch, dst.branch], [(src.branch, dst.branch)])
    when = free_time(when, dst.tag, target_env, (t for f in facts.values() for t in f.tags))
    ts = stamp(when)
    tag = tag_name(dst.tag, ts, target_env) if dst.tag else None
    repos = plan_promotion(list(facts.values()), plan_id=plan_id, source_branch=src.branch,
                           target_branch=dst.branch, tag=tag, message=message)
    plan = PromotionPlan(plan_id, "promote", source_env, target_env, (target_env,), ts, message, tuple(repos),
                         tag=tag, extra={"branch": dst.branch, "source_branch": src.branch})
    return await finish_prepare(ctx, plan, specs, facts, when)


def hotfix_chain(config: Any) -> list[str]:
    """Envs from the last promoted one back to the first (prod, stg, dev), following promote_from."""
    envs = config.environments
    sources = {e.promote_from for e in envs.values() if e.promote_from}
    ends = [name for name, e in envs.items() if e.promote_from and name not in sources]
    if len(ends) != 1:
        raise UsageError("hotfix sync needs one promotion chain (dev → stg → prod) in environments; "
                         f"found {len(ends)} ends ({', '.join(ends) or 'none'})")
    chain = [ends[0]]
    while envs[chain[-1]].promote_from:
        chain.append(envs[chain[-1]].promote_from)
    return chain


async def prepare_hotfix(ctx: FleetContext, *, message: str = "", only: Sequence[str] = (),
                         group: str | None = None) -> Prepared:
    """Plan the hotfix back-merge: prod's branch into stg's, then stg's into dev's, in every repo."""
    cfg = ctx.config
    envs = hotfix_chain(cfg)
    check_not_frozen(cfg, ctx.store, envs[1:])
    check_no_unfinished(ctx.store, "hotfix", envs[0], envs[1])
    chain = [cfg.environment(e).branch for e in envs]
    when = promotion_time(cfg.timezone)
    plan_id, ts = promotion_id("hotfix", when), stamp(when)
    specs = select_repos(cfg, ctx.root, only=only, group=group)
    await ready_and_fetch(ctx, specs)
    facts = await gather_all(ctx, specs, chain, hotfix_pairs(chain))
    repos = plan_hotfix(list(facts.values()), plan_id=plan_id, chain=chain, message=message)
    plan = PromotionPlan(plan_id, "hotfix", envs[0], envs[1], tuple(envs[1:]), ts, message, tuple(repos),
                         extra={"branch": chain[1], "chain": " ".join(chain)})
    return await finish_prepare(ctx, plan, specs, facts, when)
