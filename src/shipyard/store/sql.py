"""Building blocks shared by the query modules: the clock, insert-if-absent and text cleaning.

Insert-if-absent is the heart of the cross-process primitives (lease acquire, unique ids). It uses the
backend's own `ON CONFLICT DO NOTHING` on SQLite and PostgreSQL, so a losing racer gets "0 rows" rather than
an IntegrityError that would poison a PostgreSQL transaction; other backends fall back to a SAVEPOINT.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, insert, inspect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.store.models import Base


def utcnow() -> datetime:
    """Aware UTC now; every time the store writes comes from here unless the caller passes one."""
    return datetime.now(UTC)


def rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE/INSERT: how a compare-and-swap learns whether it won."""
    return int(cast("CursorResult[Any]", result).rowcount)


def insert_ignore(session: Session, model: type[Base], values: dict[str, Any]) -> bool:
    """Insert a row unless one with the same key exists; True if this call inserted it.

    RETURNING tells whether the row went in: drivers do not all report a rowcount for INSERT.
    """
    dialect = session.get_bind().dialect.name
    if dialect in ("sqlite", "postgresql"):
        # Imported here: the engine has loaded its own dialect already, and importing both at the top
        # would load PostgreSQL's (~50 ms) into every command of a SQLite user.
        key = inspect(model).primary_key[0]
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert
            stmt: Any = sqlite_insert(model)
        else:
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            stmt = pg_insert(model)
        stmt = stmt.values(**values).on_conflict_do_nothing().returning(key)
        return session.execute(stmt).first() is not None
    try:
        with session.begin_nested():
            session.execute(insert(model).values(**values))
    except IntegrityError:
        return False
    return True


def clean_text(value: str | None) -> str | None:
    """Text safe for every backend: PostgreSQL rejects NUL characters, which hook output can contain."""
    if value is None:
        return None
    return value.replace("\x00", "\ufffd")


def cap_text(value: str | None, limit: int) -> str | None:
    """Keep at most `limit` bytes (UTF-8) of long output, from its end: the end of a log is where the error is."""
    value = clean_text(value)
    if value is None:
        return None
    raw = value.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return value
    kept = raw[-(limit - 64):]  # 64 bytes left for the marker line
    return f"[... {len(raw) - len(kept)} bytes truncated ...]\n" + kept.decode("utf-8", errors="ignore")
