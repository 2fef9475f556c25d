"""Engines, connection settings and the error boundary of the store.

SQLite needs three things to be safe with several shipyard processes on one file: WAL (readers do not block
the writer), a busy timeout (a writer waits for the lock instead of failing at once) and write transactions
that take the write lock at BEGIN (`BEGIN IMMEDIATE`). Without the last one, two processes that both read and
then write get SQLITE_BUSY on the upgrade from read to write lock, which the busy timeout does not cover.
pysqlite's own transaction handling is switched off so that SQLAlchemy emits BEGIN itself, which also makes
SAVEPOINT work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from shipyard.dburl import anchored, first_line, is_sqlite, mask_url, parse_url, sqlite_path, url_problem
from shipyard.errors import StoreError

BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10
LIBPQ_DRIVERS = frozenset({"psycopg", "psycopg2"})
BEGIN_OPTION = "shipyard_sqlite_begin"  # execution option: "IMMEDIATE" (default) or "DEFERRED"

__all__ = ["BEGIN_OPTION", "anchored", "first_line", "is_sqlite", "make_engine", "mask_url", "parse_url",
           "read_engine", "scrub", "sqlite_path", "store_errors", "url_problem", "with_hint"]

_CORRUPT = ("file is not a database", "database disk image is malformed", "file is encrypted")


def with_hint(message: str, url: URL | None) -> str:
    """A SQLite corruption message gets what to do appended (shipyard never starts a new history over it)."""
    path = sqlite_path(url) if url is not None else None
    if path is not None and any(word in message for word in _CORRUPT):
        return (f"{message}: {path} is damaged or is not shipyard's; restore it from a backup, or move it "
                "aside (with its -wal and -shm files) to start an empty history")
    return message


def scrub(message: str, url: URL | None) -> str:
    """Remove the password from a message in case a driver quoted its connection string."""
    if url is not None and url.password and len(str(url.password)) >= 3:  # shorter would garble the text
        message = message.replace(str(url.password), "***")
    return message


@contextlib.contextmanager
def store_errors(action: str, url: URL | None) -> Iterator[None]:
    """Map SQLAlchemy and OS errors raised inside to StoreError("<action> <url>: <one line>")."""
    try:
        yield
    except (SQLAlchemyError, OSError) as err:
        where = f" {mask_url(url)}" if url is not None else ""
        raise StoreError(scrub(with_hint(f"{action}{where}: {first_line(err)}", url), url)) from err


def make_engine(url: URL) -> Engine:
    """Create the engine with the per-backend settings described in the module docstring."""
    if not is_sqlite(url):
        connect_args: dict[str, Any] = {}
        if url.get_driver_name() in LIBPQ_DRIVERS and "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S  # libpq would wait forever on a dead host
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})
    _configure_sqlite(engine, wal=path is not None)
    return engine


def read_engine(engine: Engine) -> Engine:
    """The engine read-only sessions use. SQLite: a deferred BEGIN, so a read neither takes nor waits for the
    write lock, and sees one snapshot (WAL). PostgreSQL: autocommit. Its default isolation, READ COMMITTED,
    gives each statement its own snapshot even inside a transaction, so BEGIN and COMMIT would add two round
    trips to every read and no consistency (a read session never locks rows or writes)."""
    if is_sqlite(engine.url):
        return engine.execution_options(**{BEGIN_OPTION: "DEFERRED"})
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if wal:
                # WAL is a property of the file: only the first connection ever needs to switch it.
                mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    cursor.execute("PRAGMA journal_mode = WAL")
            # synchronous stays FULL: a commit survives power loss, as "nothing lost" asks.
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
