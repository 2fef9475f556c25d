"""Bring a state database to the newest schema when a store is opened.

The Alembic config is built in code from the migrations shipped inside the package, so an installed
shipyard needs no alembic.ini. Two processes may open the same new database at once (two `shipyard deploy`
started together), so the upgrade runs under a lock: a file lock beside a SQLite file (WAL switching is not
covered by SQLite's busy timeout) and a transaction-scoped advisory lock on PostgreSQL. Inside the lock,
Alembic reads the current version and finds nothing left to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, text

from shipyard.errors import StoreError
from shipyard.store.db import mask_url, sqlite_path

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
PG_LOCK_KEY = 0x5348_4950_5944  # "SHIPYD": any constant shared by every shipyard process will do


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations (no ini file involved)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest schema revision this version of shipyard knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the packaged migrations have no head"
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the database (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, *, existing: Path | None = None) -> None:
    """Run `upgrade head` once, however many processes try at the same moment.

    `existing`: the SQLite file was there before this open, so it must hold a shipyard schema (checked
    under the lock: a concurrent first open may still be creating it). An empty one is refused."""
    cfg = alembic_config()
    with _file_lock(engine):
        if existing is not None and existing.stat().st_size == 0:
            raise StoreError(_refuse(existing, "is empty (0 bytes)"))
        with engine.begin() as conn:
            _upgrade(conn, cfg, engine, existing)


def _refuse(path: Path, what: str) -> str:
    return (f"state database {path} {what}: shipyard will not start a new history over it; restore it from a "
            f"backup, or remove it (with its -wal and -shm files) to start an empty one")


def _upgrade(conn: Connection, cfg: Config, engine: Engine, existing: Path | None) -> None:
    """Inside the upgrade lock and transaction: refuse what must not be migrated, then upgrade to head."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
    known = ScriptDirectory.from_config(cfg)
    found = MigrationContext.configure(conn).get_current_revision()
    if found is None and existing is not None:
        tables = inspect(conn).get_table_names()
        raise StoreError(_refuse(existing, f"holds no shipyard schema ({len(tables)} other tables)" if tables
                                 else "holds no shipyard schema (no tables)"))
    if found is not None and found not in {rev.revision for rev in known.walk_revisions()}:
        raise StoreError(f"state database {mask_url(engine.url)} is at schema {found!r}, which this "
                         "version of shipyard does not know; upgrade shipyard")
    cfg.attributes["connection"] = conn
    try:
        command.upgrade(cfg, "head")
    except CommandError as err:
        raise StoreError(f"cannot migrate state database {mask_url(engine.url)}: {err}") from None


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    path = sqlite_path(engine.url)
    if path is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: rely on SQLite's own locking and busy timeout
        yield
        return
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
