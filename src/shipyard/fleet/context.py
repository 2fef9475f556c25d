"""What every fleet operation carries, and the shared first half of each: ready, fetch, gather, build.

The order is the safety argument. Every repo is checked (local state only) before any network traffic;
every repo is fetched before any plan is made; every plan is built into objects before anything is
pushed. A problem anywhere in those phases is reported for all repos at once and nothing has changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from shipyard.errors import GitError, PromotionConflict, ReposNotReady
from shipyard.fleet import inventory
from shipyard.fleet.build import Built, build
from shipyard.fleet.inventory import RepoFacts, RepoSpec
from shipyard.fleet.parallel import DEFAULT_JOBS, Listener, RepoOutcome, for_each
from shipyard.fleet.plan import PromotionPlan
from shipyard.store import Store


@dataclass
class FleetContext:
    """The project a fleet operation acts on, who asks, and how (parallelism, progress listener)."""

    config: Any
    root: Path
    store: Store
    actor: str
    jobs: int = DEFAULT_JOBS
    listener: Listener | None = None
    ready: dict[str, inventory.Readiness] = field(default_factory=dict)     # filled by ready_and_fetch

    def note(self, repo: str, state: str, detail: str = "") -> None:
        if self.listener is not None:
            self.listener(repo, state, detail)


@dataclass
class Prepared:
    """A plan built into objects, ready to confirm and push (or to show, for --dry-run)."""

    plan: PromotionPlan
    specs: dict[str, RepoSpec]
    facts: dict[str, RepoFacts]
    built: dict[str, Built]
    when: datetime
    resume_of: str | None = None
    already_pushed: dict[str, str] = field(default_factory=dict)     # repo -> detail (resume)

    def problems(self) -> list[tuple[str, str]]:
        """(repo, why) for every repo that stops the whole operation: refused by the plan or conflicting."""
        out = [(r.repo, r.reason) for r in self.plan.with_action("refuse")]
        out += [(name, b.problem) for name, b in self.built.items() if b.problem is not None]
        return out

    def check(self) -> None:
        """Raise PromotionConflict listing every problem; nothing has been pushed at this point."""
        problems = self.problems()
        if problems:
            names = ", ".join(sorted({repo for repo, _ in problems}))
            raise PromotionConflict(f"nothing was pushed: {len(problems)} of {len(self.plan.repos)} repos "
                                    f"cannot be {_verb(self.plan.kind)} ({names})", problems)

    def to_push(self) -> list[str]:
        """Repos with ref updates, in plan order."""
        return [r.repo for r in self.plan.updating if r.repo in self.built and self.built[r.repo].updates]


def _verb(kind: str) -> str:
    return {"promote": "promoted", "hotfix": "synced", "rollback": "rolled back"}.get(kind, kind)


async def _all(ctx: FleetContext, specs: Sequence[RepoSpec], work: Any, phase: str) -> dict[str, RepoOutcome]:
    def listener(repo: str, state: str, detail: str) -> None:
        ctx.note(repo, f"{phase}:{state}", detail)

    by_name = {s.name: s for s in specs}
    return await for_each([s.name for s in specs], lambda name: work(by_name[name]), jobs=ctx.jobs,
                          listener=listener)


def _refuse(results: dict[str, RepoOutcome], what: str) -> None:
    bad = [(name, out.detail.removeprefix(f"{name}: ")) for name, out in results.items() if out.status == "failed"]
    if bad:
        raise ReposNotReady(f"nothing changed: {len(bad)} of {len(results)} repos {what} "
                            f"({', '.join(n for n, _ in bad)})", bad)


async def ready_and_fetch(ctx: FleetContext, specs: Sequence[RepoSpec], *, need_ident: bool = True) -> None:
    """Refuse up front unless every repo is a clean clone on a branch with an origin; then fetch them all."""
    async def check(spec: RepoSpec) -> RepoOutcome:
        ready = ctx.ready[spec.name] = await inventory.readiness(spec, need_ident=need_ident)
        return RepoOutcome("failed", ready.problem) if ready.problem else RepoOutcome("ok")

    _refuse(await _all(ctx, specs, check, "check"), "are not ready")

    async def fetch(spec: RepoSpec) -> RepoOutcome:
        await inventory.fetch(spec)
        return RepoOutcome("ok")

    _refuse(await _all(ctx, specs, fetch, "fetch"), "could not be fetched")


async def gather_all(ctx: FleetContext, specs: Sequence[RepoSpec], branches: Iterable[str],
                     pairs: dict[str, list[tuple[str, str]]] | list[tuple[str, str]]) -> dict[str, RepoFacts]:
    """Facts of every repo (`pairs` per repo, or the same for all); a missing branch refuses them all."""
    facts: dict[str, RepoFacts] = {}
    wanted = list(branches)

    async def one(spec: RepoSpec) -> RepoOutcome:
        mine = pairs.get(spec.name, []) if isinstance(pairs, dict) else pairs
        facts[spec.name] = await inventory.gather(spec, wanted, mine)
        return RepoOutcome("ok")

    _refuse(await _all(ctx, specs, one, "plan"), "are missing a branch")
    return {s.name: facts[s.name] for s in specs}


async def build_all(ctx: FleetContext, plan: PromotionPlan, specs: dict[str, RepoSpec],
                    facts: dict[str, RepoFacts], when: datetime) -> dict[str, Built]:
    """Objects for every updating repo; conflicts are collected (in Built), not raised."""
    built: dict[str, Built] = {}
    plans = {r.repo: r for r in plan.updating}

    async def one(spec: RepoSpec) -> RepoOutcome:
        try:
            ready = ctx.ready.get(spec.name)
            built[spec.name] = await build(spec.git, plans[spec.name], facts[spec.name].tips, when,
                                           plan.target_env, ident=ready.ident if ready else None)
        except GitError as err:
            built[spec.name] = Built(spec.name, problem=str(err).removeprefix(f"{spec.name}: "))
        b = built[spec.name]
        return RepoOutcome("failed", b.problem) if b.problem else RepoOutcome("ok")

    await _all(ctx, [specs[name] for name in plans], one, "merge")
    return built


async def finish_prepare(ctx: FleetContext, plan: PromotionPlan, specs: Sequence[RepoSpec],
                         facts: dict[str, RepoFacts], when: datetime, resume_of: str | None = None,
                         already: dict[str, str] | None = None) -> Prepared:
    """Build the plan into objects and bundle everything the executor and the report need."""
    by_name = {s.name: s for s in specs}
    built = await build_all(ctx, plan, by_name, facts, when)
    return Prepared(plan, by_name, facts, built, when, resume_of=resume_of, already_pushed=already or {})
