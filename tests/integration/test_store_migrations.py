"""Schema migrations on real SQLite and PostgreSQL: from empty, idempotent, concurrent, matching the models."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, inspect, text

from shipyard.errors import StoreError
from shipyard.store import Store, schema
from shipyard.store.migrate import alembic_config, current_revision, head_revision
from shipyard.store.models import Base

TABLES = {"deployments", "steps", "events", "leases", "queue", "alembic_version"}


def test_open_migrates_empty_database_to_head(db_url: str) -> None:
    with Store.open(db_url) as store:
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        assert current_revision(store.engine) == head_revision()


def test_reopen_is_a_no_op(db_url: str) -> None:
    with Store.open(db_url) as store, store.session() as s:
        s.execute(text("INSERT INTO leases (service, env, deployment_id, owner, acquired_at, heartbeat_at, "
                       "expires_at) VALUES ('a', 'b', 'c', 'd', :t, :t, :t)"), {"t": "2024-01-01 00:00:00"})
    with Store.open(db_url) as store, store.session() as s:
        assert current_revision(store.engine) == head_revision()
        assert s.execute(text("SELECT count(*) FROM leases")).scalar() == 1
        assert s.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_models_match_migrations(store: Store) -> None:
    """Autogenerate finds nothing to do: every model change came with a migration."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True})
        assert compare_metadata(context, Base.metadata) == []


def test_model_drift_would_be_detected(store: Store) -> None:
    """The comparison above is not vacuous: a column missing from the migrations shows up."""
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["events"].append_column(Column("severity", String(16), nullable=True))
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), drifted)
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "severity")]


def test_sqlite_uses_wal_foreign_keys_and_busy_timeout(sqlite_store: Store) -> None:
    with sqlite_store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000


def test_readonly_session_does_not_wait_for_a_writer(store: Store) -> None:
    """Writers serialize at BEGIN on SQLite; readers must not queue behind them (nor on PostgreSQL)."""
    with store.session() as writer:
        writer.execute(text("INSERT INTO leases VALUES ('a', 'b', 'c', 'd', :t, :t, :t)"),
                       {"t": "2024-01-01 00:00:00"})
        started = time.monotonic()
        with store.session(readonly=True) as reader:
            assert reader.execute(text("SELECT count(*) FROM leases")).scalar() == 0  # not yet committed
        assert time.monotonic() - started < 5


def test_open_creates_parent_directory(tmp_path: Path) -> None:
    db = tmp_path / "project" / ".shipyard" / "state.db"
    with Store.open(f"sqlite:///{db}"):
        pass
    assert db.exists()


def test_unknown_schema_version_is_a_store_error(db_url: str) -> None:
    with Store.open(db_url) as store, store.session() as s:
        s.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    with pytest.raises(StoreError, match=r"'from_the_future'.*upgrade shipyard") as info:
        Store.open(db_url)
    assert "\n" not in str(info.value)


OPENER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from shipyard.store import Store
    go = Path(sys.argv[2])
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.001)
    with Store.open(sys.argv[1]) as store, store.session() as s:
        s.connection()
    print("opened", flush=True)
""")


def test_processes_opening_a_new_database_at_once(db_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, db_url, str(go)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.05)
        go.touch()
        results = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "opened"
    with Store.open(db_url) as store, store.session() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [head_revision()]


def test_the_cheap_head_is_alembics_head() -> None:
    """Store.open skips Alembic when the database records schema.HEAD: it must be the newest migration."""
    assert head_revision() == schema.HEAD


OPEN_AND_TELL = textwrap.dedent("""
    import sys
    from shipyard.store import Store
    Store.open(sys.argv[1]).close()
    print("alembic loaded" if "alembic" in sys.modules else "alembic not loaded")
""")


def _open_in_a_new_process(url: str) -> str:
    done = subprocess.run([sys.executable, "-c", OPEN_AND_TELL, url], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_opening_a_current_database_does_not_load_alembic(db_url: str) -> None:
    """Every command opens the store: one already at head is opened without importing Alembic (~0.3 s)."""
    assert _open_in_a_new_process(db_url) == "alembic loaded"          # a new database is migrated
    assert _open_in_a_new_process(db_url) == "alembic not loaded"      # then it is current
    with Store.open(db_url) as store:
        assert current_revision(store.engine) == head_revision()


def test_a_database_behind_head_is_still_upgraded(db_url: str) -> None:
    with Store.open(db_url) as store, store.engine.begin() as conn:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    with Store.open(db_url, migrate=False) as store:
        assert current_revision(store.engine) == "0002"
    assert _open_in_a_new_process(db_url) == "alembic loaded"
    with Store.open(db_url) as store:
        assert current_revision(store.engine) == head_revision()
        assert "outbox" in inspect(store.engine).get_table_names()
