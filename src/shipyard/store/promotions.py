"""Promotion records and environment freezes: create, update per repo, list, freeze and unfreeze.

A promotion row is written before its first push and each repo's row is updated right after that repo's
push or compensation, in its own short transaction: the record is never behind what the remotes show by
more than the one push in flight, which is what `promote --resume` and the report rely on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.store.models import EnvFreeze, Promotion, PromotionRepo
from shipyard.store.sql import clean_text, utcnow

KINDS: Final = frozenset({"promote", "hotfix", "rollback"})
STATES: Final = frozenset({"planned", "pushed", "partial", "compensated", "failed", "completed", "abandoned"})
TERMINAL: Final = frozenset({"compensated", "failed", "completed", "abandoned"})
UNFINISHED: Final = STATES - TERMINAL           # planned, pushed, partial: `promote --resume` may finish them


def create_promotion(session: Session, *, promotion_id: str, kind: str, source_env: str | None,
                     target_env: str, stamp: str, actor: str, message: str, state: str = "planned",
                     rollback_to: str | None = None,
                     repos: Iterable[Mapping[str, Any]] = (), detail: str | None = None,
                     now: datetime | None = None) -> Promotion:
    """Record a promotion and its repos (each mapping: repo, result, and optionally branch, source_sha,
    old_sha, new_sha, tag, detail, updates)."""
    if kind not in KINDS:
        raise ValueError(f"promotion kind must be one of {sorted(KINDS)}, not {kind!r}")
    if state not in STATES:
        raise ValueError(f"unknown promotion state {state!r}")
    now = now or utcnow()
    row = Promotion(id=promotion_id, kind=kind, source_env=source_env, target_env=target_env, stamp=stamp,
                    rollback_to=rollback_to, actor=actor, message=clean_text(message) or "", state=state,
                    detail=clean_text(detail), created_at=now, finished_at=now if state in TERMINAL else None)
    session.add(row)
    for repo in repos:
        session.add(PromotionRepo(
            promotion_id=promotion_id, repo=repo["repo"], branch=repo.get("branch"),
            source_sha=repo.get("source_sha"), old_sha=repo.get("old_sha"), new_sha=repo.get("new_sha"),
            tag=repo.get("tag"), result=repo["result"], detail=clean_text(repo.get("detail")),
            updates=list(repo.get("updates") or []), updated_at=now))
    session.flush()
    return row


def get_promotion(session: Session, promotion_id: str) -> Promotion | None:
    return session.get(Promotion, promotion_id, populate_existing=True)


def promotion_repos(session: Session, promotion_id: str) -> list[PromotionRepo]:
    """The repos of one promotion, by name."""
    return list(session.scalars(select(PromotionRepo).where(PromotionRepo.promotion_id == promotion_id)
                                .order_by(PromotionRepo.repo)))


def set_promotion_state(session: Session, promotion_id: str, state: str, *, detail: str | None = None,
                        now: datetime | None = None) -> Promotion:
    """Move a promotion to `state`; a terminal state stamps finished_at."""
    if state not in STATES:
        raise ValueError(f"unknown promotion state {state!r}")
    row = get_promotion(session, promotion_id)
    if row is None:
        raise KeyError(promotion_id)
    row.state = state
    if detail is not None:
        row.detail = clean_text(detail)
    row.finished_at = (now or utcnow()) if state in TERMINAL else None
    session.flush()
    return row


def set_repo_result(session: Session, promotion_id: str, repo: str, result: str, *, detail: str | None = None,
                    now: datetime | None = None, **values: Any) -> PromotionRepo:
    """Record what happened to one repo (`values` may also set new_sha, old_sha, tag, updates, ...)."""
    row = session.get(PromotionRepo, (promotion_id, repo), populate_existing=True)
    if row is None:
        raise KeyError(f"{promotion_id}/{repo}")
    row.result = result
    row.detail = clean_text(detail)
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = now or utcnow()
    session.flush()
    return row


def list_promotions(session: Session, *, env: str | None = None, limit: int | None = 20) -> list[Promotion]:
    """Newest first; `env` matches the target environment."""
    stmt = select(Promotion).order_by(Promotion.created_at.desc(), Promotion.id.desc())
    if env is not None:
        stmt = stmt.where(Promotion.target_env == env)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))


def unfinished_promotions(session: Session, *, target_env: str) -> list[Promotion]:
    """Promotions into `target_env` that neither finished nor were given up, oldest first."""
    stmt = (select(Promotion).where(Promotion.target_env == target_env, Promotion.state.in_(sorted(UNFINISHED)))
            .order_by(Promotion.created_at, Promotion.id))
    return list(session.scalars(stmt))


def find_promotion_by_tag(session: Session, env: str, tag: str) -> Promotion | None:
    """The promotion into `env` that created `tag` (in any repo), newest first."""
    stmt = (select(Promotion).join(PromotionRepo, PromotionRepo.promotion_id == Promotion.id)
            .where(Promotion.target_env == env, PromotionRepo.tag == tag)
            .order_by(Promotion.created_at.desc()).limit(1))
    return session.scalars(stmt).first()


# --- freezes ----------------------------------------------------------------------------------------------
def active_freeze(session: Session, env: str) -> EnvFreeze | None:
    """The freeze in force on `env` (the newest unlifted one), if any."""
    stmt = (select(EnvFreeze).where(EnvFreeze.env == env, EnvFreeze.lifted_at.is_(None))
            .order_by(EnvFreeze.id.desc()).limit(1))
    return session.scalars(stmt).first()


def freeze_env(session: Session, env: str, *, reason: str, actor: str, promotion_id: str | None = None,
               now: datetime | None = None) -> EnvFreeze:
    """Freeze `env` (a second freeze on a frozen env is recorded too; unfreeze lifts them all)."""
    row = EnvFreeze(env=env, promotion_id=promotion_id, reason=clean_text(reason) or "", frozen_by=actor,
                    frozen_at=now or utcnow())
    session.add(row)
    session.flush()
    return row


def unfreeze_env(session: Session, env: str, *, actor: str, now: datetime | None = None) -> list[EnvFreeze]:
    """Lift every active freeze of `env`; returns what was lifted (empty: it was not frozen)."""
    rows = list(session.scalars(select(EnvFreeze).where(EnvFreeze.env == env, EnvFreeze.lifted_at.is_(None))))
    when = now or utcnow()
    for row in rows:
        row.lifted_at, row.lifted_by = when, actor
    session.flush()
    return rows
