"""Whether a state database is already at the newest schema, answered without loading Alembic.

Every command opens the store, and nearly always the database is at the newest schema already. Importing
Alembic and reading the migration scripts only to find nothing to do cost every command ~0.3 s, so
`Store.open` asks here first and takes the full upgrade path (its lock, its checks, its messages) only
when the answer is not a plain yes. `HEAD` names the newest revision in migrations/versions; a test
compares it with Alembic's own head, so a new migration cannot be forgotten here.
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

HEAD = "0013"


def at_head(engine: Engine) -> bool:
    """True when the database records exactly `HEAD`. No version table, another version, several rows or
    any error (a file that is no database, a locked or unreachable server) is False: the caller then
    runs the upgrade, which reports what is wrong."""
    try:
        with engine.connect() as conn:
            found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except SQLAlchemyError:
        return False
    return found == [HEAD]
