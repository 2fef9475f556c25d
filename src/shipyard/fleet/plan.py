"""The promotion planner: facts in, a plan out, no I/O (DESIGN principle 4).

A plan says, per repo, which branch moves how (merge a branch or pinned commit in, restore an old tree)
and which tag is made, or why the repo is skipped or refused. Whether a merge conflicts is found when the
executor builds the plan into git objects (`fleet.build`), still before anything is pushed. Keeping this
part pure means the rules (what counts as nothing to promote, when a hotfix back-merge is needed, what a
rollback restores) are tested as data, and `--dry-run` shows exactly what a real run would do.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from shipyard.fleet.inventory import Commit, RepoFacts

Kind = Literal["promote", "hotfix", "rollback"]
Action = Literal["update", "skip", "refuse"]


@dataclass(frozen=True)
class Merge:
    """Merge `source` (a branch's planned tip, or the pinned `source_sha`) into `branch`.

    `no_ff`: always a merge commit (promotions, as the teams' scripts did); otherwise a fast-forward when
    `branch` is an ancestor of the source (hotfix back-merges, which would only add merge noise).
    """

    branch: str
    source: str
    message: str
    source_sha: str | None = None
    no_ff: bool = True


@dataclass(frozen=True)
class Restore:
    """Give `branch` the tree of `commit` again: a new commit on top (revert) or, with `force`, the commit
    itself (a force-with-lease push, only where the environment allows it)."""

    branch: str
    commit: str
    message: str
    force: bool = False


@dataclass(frozen=True)
class Tag:
    """An annotated tag on `branch`'s new tip; `name` may still hold `{sha}` (filled in by the builder)."""

    name: str
    branch: str
    message: str


Step = Merge | Restore | Tag


@dataclass(frozen=True)
class Moving:
    """What one branch of one repo receives: commits (newest first, maybe capped) and their total count."""

    branch: str
    commits: tuple[Commit, ...]
    count: int


@dataclass(frozen=True)
class RepoPlan:
    repo: str
    action: Action
    steps: tuple[Step, ...] = ()
    reason: str = ""
    moving: tuple[Moving, ...] = ()
    source_sha: str | None = None       # what is being promoted/restored: kept so --resume can redo it

    @property
    def branches(self) -> tuple[str, ...]:
        """Branches this repo's push updates, in step order."""
        seen: list[str] = []
        for step in self.steps:
            if isinstance(step, Merge | Restore) and step.branch not in seen:
                seen.append(step.branch)
        return tuple(seen)


@dataclass(frozen=True)
class PromotionPlan:
    id: str
    kind: Kind
    source_env: str | None
    target_env: str
    target_envs: tuple[str, ...]        # every env whose branch this plan moves
    stamp: str
    message: str
    repos: tuple[RepoPlan, ...]
    tag: str | None = None              # the tag name (for display; per repo it may differ by {sha})
    extra: Mapping[str, str] = field(default_factory=dict)

    def with_action(self, action: Action) -> list[RepoPlan]:
        return [r for r in self.repos if r.action == action]

    @property
    def updating(self) -> list[RepoPlan]:
        return self.with_action("update")


def _tag_taken(name: str, facts: RepoFacts) -> bool:
    return "{sha}" not in name and name in facts.tags


def plan_promotion(facts: Sequence[RepoFacts], *, plan_id: str, source_branch: str, target_branch: str,
                   tag: str | None, message: str, pinned: Mapping[str, str] | None = None) -> list[RepoPlan]:
    """Merge `source_branch` into `target_branch` (--no-ff) in every repo where it has new commits.

    `pinned` (repo -> sha) promotes that exact commit instead of the source's tip: `--resume` finishes a
    promotion with what it started with, not with whatever was pushed to dev since.
    """
    out: list[RepoPlan] = []
    for f in facts:
        source = (pinned or {}).get(f.repo) or source_branch
        count = f.ahead_count.get((source, target_branch), 0)
        if count == 0:
            out.append(RepoPlan(f.repo, "skip", reason=f"nothing to promote ({target_branch} already has "
                                                        f"every commit of {source_branch})"))
            continue
        if tag and _tag_taken(tag, f):
            out.append(RepoPlan(f.repo, "refuse", reason=f"tag {tag} already exists"))
            continue
        sha = source if source != source_branch else f.tips[source_branch]
        subject = message or f"Merge branch '{source_branch}' into {target_branch}"
        steps: list[Step] = [Merge(target_branch, source_branch, _with_trailer(subject, plan_id), source_sha=sha)]
        if tag:
            steps.append(Tag(tag, target_branch, _with_trailer(message or f"Promotion {plan_id}", plan_id)))
        out.append(RepoPlan(f.repo, "update", tuple(steps),
                            moving=(Moving(target_branch, f.commits(source, target_branch), count),),
                            source_sha=sha))
    return out


def hotfix_pairs(chain: Sequence[str]) -> list[tuple[str, str]]:
    """The (source, target) pairs whose commits `plan_hotfix` needs, for a chain like main, stg, dev."""
    return [pair for i, a in enumerate(chain) for b in chain[i + 1:] for pair in ((a, b), (b, a))]


def plan_hotfix(facts: Sequence[RepoFacts], *, plan_id: str, chain: Sequence[str], message: str) -> list[RepoPlan]:
    """Back-merge along `chain` (prod's branch first): main into stg, then stg into dev, in every repo.

    Each step is needed when its source (as the previous step left it) has commits the target lacks. A
    step whose source is a new merge commit is always needed, so the next sync finds nothing to do.
    """
    out: list[RepoPlan] = []
    for f in facts:
        steps: list[Step] = []
        moving: list[Moving] = []
        equiv: str | None = chain[0]        # the original branch whose tip the running source equals
        for source, target in itertools.pairwise(chain):
            if equiv is not None:
                count = f.ahead_count.get((equiv, target), 0)
                if count == 0:
                    equiv = target          # nothing new; the next step's source is this branch as it is
                    continue
                commits = f.commits(equiv, target)
                fast_forward = f.ahead_count.get((target, equiv), 0) == 0
                equiv = equiv if fast_forward else None
            else:
                commits, count = (), 0
                for earlier in chain[: chain.index(target)]:
                    commits += tuple(c for c in f.commits(earlier, target) if c not in commits)
                count = max(len(commits), 1)
            subject = message or f"Merge branch '{source}' into {target}"
            steps.append(Merge(target, source, _with_trailer(subject, plan_id), no_ff=False))
            moving.append(Moving(target, commits, count))
        if steps:
            out.append(RepoPlan(f.repo, "update", tuple(steps), moving=tuple(moving), source_sha=f.tips[chain[0]]))
        else:
            out.append(RepoPlan(f.repo, "skip", reason=f"nothing to sync ({' → '.join(chain)} already merged)"))
    return out


@dataclass(frozen=True)
class RestoreTarget:
    """Where a repo's env branch goes back to, and how that was found (for the report)."""

    commit: str | None
    tree: str | None
    found: str                      # "tag", "record", "earlier tag X", or why nothing was found
    tip_tree: str | None = None


def plan_rollback(facts: Sequence[RepoFacts], targets: Mapping[str, RestoreTarget], *, plan_id: str,
                  branch: str, to: str, force: bool, tag: str | None, message: str) -> list[RepoPlan]:
    """Put `branch` back to the tree it had at `to` in every repo (refusing repos where that is unknown)."""
    out: list[RepoPlan] = []
    for f in facts:
        t = targets.get(f.repo)
        if t is None or t.commit is None:
            out.append(RepoPlan(f.repo, "refuse", reason=t.found if t else f"no state recorded for {to}"))
            continue
        tip = f.tips[branch]
        if (force and tip == t.commit) or (not force and t.tree is not None and t.tree == t.tip_tree):
            out.append(RepoPlan(f.repo, "skip", reason=f"{branch} already has the tree of {to}"))
            continue
        if tag and _tag_taken(tag, f):
            out.append(RepoPlan(f.repo, "refuse", reason=f"tag {tag} already exists"))
            continue
        subject = message or f"Roll back {branch} to {to}"
        body = f"{subject}\n\nRestores the tree of {t.commit[:12]} ({to}, found by {t.found})."
        steps: list[Step] = [Restore(branch, t.commit, _with_trailer(body, plan_id), force=force)]
        if tag:
            steps.append(Tag(tag, branch, _with_trailer(f"Rollback {plan_id} to {to}", plan_id)))
        leaving = Moving(branch, f.commits(branch, t.commit), f.ahead_count.get((branch, t.commit), 0))
        out.append(RepoPlan(f.repo, "update", tuple(steps), moving=(leaving,), source_sha=t.commit))
    return out


def _with_trailer(message: str, plan_id: str) -> str:
    """The message plus a `Shipyard-Promotion:` trailer, so `git log` leads back to the record."""
    return f"{message.rstrip()}\n\nShipyard-Promotion: {plan_id}\n"
