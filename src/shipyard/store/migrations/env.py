"""Alembic environment for the state database.

shipyard builds the Alembic config in code (see `shipyard.store.migrate`) and passes an open connection in
`config.attributes["connection"]`, already inside the transaction that holds the migration lock; this file
only falls back to `sqlalchemy.url` for running `alembic` by hand during development.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from shipyard.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite can only ALTER through table copies
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            _run(conn)
        engine.dispose()
