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
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError, StatementError

from shipyard.errors import StoreError

BUSY_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT_S = 10
LIBPQ_DRIVERS = frozenset({"psycopg", "psycopg2"})
BEGIN_OPTION = "shipyard_sqlite_begin"  # execution option: "IMMEDIATE" (default) or "DEFERRED"


def parse_url(url: str) -> URL:
    """Parse a SQLAlchemy URL, turning a malformed one into a StoreError that does not echo secrets."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as err:
        raise StoreError(f"invalid state database URL {mask_url(url)!r}: {first_line(err)}") from None


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a state database (one line, password masked), or None. For the config check:
    a URL that does not parse, names no known database, or keeps the state in memory (lost on exit)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as err:
        return f"invalid database URL {mask_url(url)!r}: {first_line(err)}"
    try:
        parsed.get_dialect()
    except (ArgumentError, ImportError) as err:       # NoSuchModuleError is an ArgumentError
        return f"unknown database {parsed.drivername!r} in {mask_url(parsed)!r} ({first_line(err)}); " \
               "use sqlite:///PATH or postgresql+psycopg://..."
    if is_sqlite(parsed) and (not parsed.database or parsed.database == ":memory:"):
        return "an in-memory SQLite database loses every record when the command ends; give a file: sqlite:///PATH"
    return None


def anchored(url: str, root: Path) -> str:
    """`url` with a relative SQLite path made absolute against `root` (the config's directory), so a
    command run from another directory opens the same database instead of creating a new one there."""
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is None or path.is_absolute():
        return url
    return parsed.set(database=str((Path(root) / path).resolve())).render_as_string(hide_password=False)


_CORRUPT = ("file is not a database", "database disk image is malformed", "file is encrypted")


def with_hint(message: str, url: URL | None) -> str:
    """A SQLite corruption message gets what to do appended (shipyard never starts a new history over it)."""
    path = sqlite_path(url) if url is not None else None
    if path is not None and any(word in message for word in _CORRUPT):
        return (f"{message}: {path} is damaged or is not shipyard's; restore it from a backup, or move it "
                "aside (with its -wal and -shm files) to start an empty history")
    return message


def mask_url(url: str | URL) -> str:
    """The URL as it may be shown to people and written to logs: any password replaced by ***."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparsable: drop anything between '://' and '@' rather than risk printing a password.
        scheme, sep, rest = url.partition("://")
        if sep and "@" in rest:
            return f"{scheme}://***@{rest.rpartition('@')[2]}"
        return url


def first_line(err: BaseException) -> str:
    """The useful one line of a driver error (SQLAlchemy appends SQL, parameters and a docs link)."""
    source: BaseException = err
    if isinstance(err, StatementError) and err.orig is not None:
        source = err.orig
    text = str(source).strip() or type(source).__name__
    return text.splitlines()[0].strip()


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


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory and `file:` URI databases."""
    database = url.database
    if not is_sqlite(url) or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


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
