"""The state database: deployments, steps, events, the (service, env) lease and its queue.

`Store.open(url)` connects and migrates; `store.session()` gives a transaction. The query functions in
the submodules take that session, so callers decide what commits together (a state change and its event,
for instance). SQLAlchemy errors never leave a `Store` method or session block: they become a one-line
StoreError naming the database with its password masked.

    with Store.open(default_url(project_dir)) as store:
        with store.session() as s:
            dep = create_deployment(s, service="api", env="dev", revision=sha, strategy="rolling", actor="me")
            add_event(s, "deploy.queued", service="api", env="dev", deployment_id=dep.id)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from shipyard.errors import StoreError
from shipyard.store.db import (
    first_line,
    make_engine,
    mask_url,
    parse_url,
    read_engine,
    scrub,
    sqlite_path,
    store_errors,
    with_hint,
)
from shipyard.store.deployments import (
    UNSET,
    create_deployment,
    find_unfinished,
    get_deployment,
    last_succeeded,
    list_deployments,
    succeeded_history,
    unique_deployment_id,
    update_deployment,
)
from shipyard.store.events import add_event, list_events
from shipyard.store.leases import (
    get_lease,
    heartbeat,
    lease_is_stale,
    list_leases,
    release,
    try_acquire,
)
from shipyard.store.models import Deployment, Event, Lease, QueueEntry, StepRecord
from shipyard.store.owner import current_owner, owner_is_dead
from shipyard.store.queue import (
    QueuedRun,
    dequeue,
    enqueue,
    list_queue,
    prune,
    queue_heartbeat,
    queue_position,
)
from shipyard.store.schema import at_head
from shipyard.store.steps import finish_step, get_step, list_steps, start_step

STATE_DIR = ".shipyard"
STATE_FILE = "state.db"


def default_url(project_dir: Path) -> str:
    """`sqlite:///<project>/.shipyard/state.db`: the embedded default, needing nothing installed."""
    return f"sqlite:///{(Path(project_dir).resolve() / STATE_DIR / STATE_FILE).as_posix()}"


class Store:
    """An open state database. Cheap to keep for a process's lifetime; close it when done."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = mask_url(engine.url)  # safe to print
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(read_engine(engine), expire_on_commit=False)

    @property
    def display_url(self) -> str:
        return self.url

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Connect to `url` (creating a SQLite file's directory) and upgrade the schema to head.

        A SQLite file that exists but is empty, or holds no shipyard schema, is refused (StoreError saying
        what to do): starting a new history over it would silently lose the old one. Only a file that
        does not exist yet is created."""
        parsed = parse_url(url)
        path = sqlite_path(parsed)
        existing = path if path is not None and path.exists() else None
        with store_errors("cannot open state database", parsed):
            try:
                engine = make_engine(parsed)
            except ModuleNotFoundError as err:
                raise StoreError(f"cannot open state database {mask_url(parsed)}: "
                                 f"missing driver module {err.name!r}") from None
            try:
                # Only a database that can already be at head is asked (a new or empty SQLite file is
                # left untouched for the upgrade, which creates or refuses it).
                maybe_current = path is None or (existing is not None and existing.stat().st_size > 0)
                if not migrate:
                    with engine.connect():
                        pass
                elif not (maybe_current and at_head(engine)):
                    from shipyard.store.migrate import upgrade  # alembic only loads when there is work
                    upgrade(engine, existing=existing)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine)

    @contextlib.contextmanager
    def session(self, *, readonly: bool = False) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back if it raises.

        On SQLite a normal session takes the write lock at BEGIN (see `shipyard.store.db`); pass
        `readonly=True` for reads that should not queue behind writers (and then do not write). Keep
        sessions short and never open a second write session inside one in the same thread: on SQLite it
        waits for the first (the 30 s busy timeout) and then fails.
        """
        maker = self._read_sessions if readonly else self._sessions
        try:
            with maker() as session, session.begin():
                yield session
        except SQLAlchemyError as err:
            message = with_hint(f"state database error ({self.url}): {first_line(err)}", self.engine.url)
            raise StoreError(scrub(message, self.engine.url)) from err

    def close(self) -> None:
        """Return every pooled connection; the store must not be used afterwards."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.url}>"


__all__ = [
    "UNSET",
    "Deployment",
    "Event",
    "Lease",
    "QueueEntry",
    "QueuedRun",
    "StepRecord",
    "Store",
    "add_event",
    "create_deployment",
    "current_owner",
    "default_url",
    "dequeue",
    "enqueue",
    "find_unfinished",
    "finish_step",
    "get_deployment",
    "get_lease",
    "get_step",
    "heartbeat",
    "last_succeeded",
    "lease_is_stale",
    "list_deployments",
    "list_events",
    "list_leases",
    "list_queue",
    "list_steps",
    "owner_is_dead",
    "prune",
    "queue_heartbeat",
    "queue_position",
    "release",
    "start_step",
    "succeeded_history",
    "try_acquire",
    "unique_deployment_id",
    "update_deployment",
]
