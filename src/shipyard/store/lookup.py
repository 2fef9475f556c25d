"""Find a recorded run by a prefix of its id, like git finds a commit: `shipyard show deploy-2026112`.

Deployments, promotions and release group runs share one id space for this (their ids start with their
kind: `deploy-`, `promote-`, `hotfix-`, `rollback-`, `release-`), so one prefix names at most one record
of any of them, or is ambiguous. A complete id always wins, even when it is also the prefix of a longer one
(`deploy-...-a1b2c3d4` and `deploy-...-a1b2c3d4-2`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from shipyard.store.models import Deployment, Promotion, ReleaseGroupRun

DEPLOYMENT: Final = "deployment"
PROMOTION: Final = "promotion"
RELEASE: Final = "release"
_TABLES: Final = ((DEPLOYMENT, Deployment), (PROMOTION, Promotion), (RELEASE, ReleaseGroupRun))
SHOWN_CANDIDATES: Final = 10     # an ambiguous prefix lists this many ids (and how many more there are)


@dataclass(frozen=True)
class Match:
    """What a prefix names: exactly one (`found`), or the candidates it could mean."""

    prefix: str
    found: tuple[str, str] | None = None                 # (DEPLOYMENT|PROMOTION|RELEASE, id)
    candidates: list[tuple[str, str]] = field(default_factory=list)
    more: int = 0                                        # candidates beyond the ones listed


def find_by_prefix(session: Session, prefix: str) -> Match:
    """The deployment, promotion or release whose id is `prefix`, else the one whose id starts with it."""
    exact = [(kind, prefix) for kind, model in _TABLES if session.get(model, prefix) is not None]
    if len(exact) == 1:
        return Match(prefix, found=exact[0])
    hits: list[tuple[str, str]] = []
    for kind, column in ((kind, model.id) for kind, model in _TABLES):
        ids = session.scalars(select(column).where(column.startswith(prefix, autoescape=True))
                              .order_by(column).limit(SHOWN_CANDIDATES + 1))
        # LIKE ignores case on SQLite: compare again so `DEPLOY-` does not match `deploy-`.
        hits += [(kind, i) for i in ids if i.startswith(prefix)]
    if len(hits) == 1:
        return Match(prefix, found=hits[0])
    more = 0
    if len(hits) > SHOWN_CANDIDATES:
        total = sum(session.scalar(select(func.count()).where(column.startswith(prefix, autoescape=True))) or 0
                    for column in (model.id for _, model in _TABLES))
        more = total - SHOWN_CANDIDATES
    return Match(prefix, candidates=sorted(hits, key=lambda h: h[1])[:SHOWN_CANDIDATES], more=max(0, more))
