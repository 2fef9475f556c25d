"""Promotions (multi-repo merges, hotfix syncs, tag rollbacks): the newest first, and one with its repos."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlalchemy import select

from shipyard.api.auth import check_env, env_filter, require, store_of
from shipyard.api.schemas import Problem, PromotionDetail, PromotionOut, PromotionRepoOut
from shipyard.store import promotions as pq
from shipyard.store.models import ApiToken, Promotion

router = APIRouter(tags=["promotions"], responses={401: {"model": Problem}, 403: {"model": Problem}})
Reader = Annotated[ApiToken, Depends(require("read"))]


@router.get("/promotions", response_model=list[PromotionOut], summary="Promotions, newest first")
def list_promotions(request: Request, token: Reader, env: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[PromotionOut]:
    stmt = select(Promotion).order_by(Promotion.created_at.desc(), Promotion.id.desc()).limit(limit)
    stmt = env_filter(stmt, token, Promotion.target_env, env)
    with store_of(request).session(readonly=True) as s:
        return [PromotionOut.model_validate(p) for p in s.scalars(stmt)]


@router.get("/promotions/{promotion_id}", response_model=PromotionDetail, summary="One promotion, repo by repo",
            responses={404: {"model": Problem}})
def get_promotion(request: Request, promotion_id: str, token: Reader) -> PromotionDetail:
    with store_of(request).session(readonly=True) as s:
        row = pq.get_promotion(s, promotion_id)
        if row is None:
            raise HTTPException(404, f"no promotion {promotion_id!r}")
        check_env(token, row.target_env)
        repos = [PromotionRepoOut.model_validate(r) for r in pq.promotion_repos(s, promotion_id)]
    return PromotionDetail(**PromotionOut.model_validate(row).model_dump(), repos=repos)
