"""State database URLs: parse, check, mask, anchor. No engine, no ORM, no store.

Apart from `shipyard.store` because the config checks its `state:` URL in every command, and importing
anything inside the store package loads the ORM, the models and every query module (~0.25 s) that most
commands never use. `shipyard.store.db` re-exports all of these.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, StatementError

from shipyard.errors import StoreError


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


def is_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite"


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for in-memory and `file:` URI databases."""
    database = url.database
    if not is_sqlite(url) or not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)
