"""API tokens: made once and shown once, kept as a hash, with scopes and optionally bound to environments.

A token reads `shy_<id>_<secret>`: the id finds the row (it is the primary key, not secret), the secret is
compared by its sha256 in constant time. Scopes: read < deploy, approve; admin implies every scope. A
token bound to environments may act only on those (reads of other environments are refused too: a stg
token sees nothing of prod).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.errors import UsageError
from shipyard.store.models import ApiToken
from shipyard.store.sql import utcnow

SCOPES: Final = ("read", "deploy", "approve", "admin")
PREFIX: Final = "shy_"
_TOKEN = re.compile(r"^shy_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def parse_scopes(text: str | Iterable[str]) -> list[str]:
    """`read,deploy` (or a list) -> the sorted scopes; UsageError naming an unknown one."""
    items = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [s for s in items if s not in SCOPES]
    if unknown or not items:
        raise UsageError(f"unknown scope {unknown[0]!r}: use {', '.join(SCOPES)}" if unknown
                         else f"a token needs at least one scope ({', '.join(SCOPES)})")
    return sorted(set(items))


def scopes_of(row: ApiToken) -> set[str]:
    return set(row.scopes.split(","))


def envs_of(row: ApiToken) -> set[str] | None:
    return set(row.envs.split(",")) if row.envs else None


def allows(row: ApiToken, scope: str, env: str | None = None) -> bool:
    """Whether the token may do `scope` (on `env`, when the action concerns one environment)."""
    held = scopes_of(row)
    if scope not in held and "admin" not in held:
        return False
    bound = envs_of(row)
    return bound is None or env is None or env in bound


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(session: Session, *, name: str, scopes: Iterable[str], envs: Iterable[str] | None, actor: str,
                 now: datetime | None = None) -> tuple[ApiToken, str]:
    """A new token: its row and the token text (the only time it exists outside the caller's hands)."""
    if not _NAME.match(name):
        raise UsageError(f"token name {name!r}: letters, digits, '.', '_' and '-' (up to 128), starting with a "
                         "letter or digit")
    if active_token(session, name) is not None:
        raise UsageError(f"a token named {name!r} exists: revoke it first (`shipyard tokens revoke {name}`)")
    bound = sorted(set(envs)) if envs else None
    secret = secrets.token_urlsafe(32)
    row = ApiToken(id=secrets.token_hex(8), name=name, secret_hash=_digest(secret), scopes=",".join(sorted(scopes)),
                   envs=",".join(bound) if bound else None, created_by=actor, created_at=now or utcnow(),
                   last_used_at=None, revoked_at=None)
    session.add(row)
    session.flush()
    return row, f"{PREFIX}{row.id}_{secret}"


def verify_token(session: Session, text: str) -> ApiToken | None:
    """The live token `text` is, or None (malformed, unknown, revoked or a wrong secret: all alike)."""
    match = _TOKEN.match(text.strip())
    if match is None:
        return None
    row = session.get(ApiToken, match.group(1))
    if row is None or row.revoked_at is not None:
        return None
    return row if hmac.compare_digest(row.secret_hash, _digest(match.group(2))) else None


def active_token(session: Session, name: str) -> ApiToken | None:
    stmt = select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None))
    return session.scalars(stmt).first()


def list_tokens(session: Session, *, include_revoked: bool = False) -> list[ApiToken]:
    stmt = select(ApiToken).order_by(ApiToken.created_at, ApiToken.id)
    if not include_revoked:
        stmt = stmt.where(ApiToken.revoked_at.is_(None))
    return list(session.scalars(stmt))


def revoke_token(session: Session, name: str, now: datetime | None = None) -> ApiToken:
    row = active_token(session, name)
    if row is None:
        raise UsageError(f"no live token named {name!r} (`shipyard tokens list` shows them)")
    row.revoked_at = now or utcnow()
    session.flush()
    return row


def touch_due(row: ApiToken, now: datetime | None = None) -> bool:
    """Whether a use of `row` now should be recorded: at most once a minute per token, so that a busy
    client's reads stay reads."""
    now = now or utcnow()
    return row.last_used_at is None or (now - row.last_used_at).total_seconds() >= 60


def touch(session: Session, token_id: str, now: datetime | None = None) -> None:
    row = session.get(ApiToken, token_id)
    if row is not None:
        row.last_used_at = now or utcnow()
        session.flush()
