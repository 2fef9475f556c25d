"""Database failures reach users as one-line StoreErrors that never show a password."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from shipyard.errors import StoreError
from shipyard.store import Store, create_deployment

SECRET = "s3cr3t-Pa55"


def open_error(url: str) -> str:
    with pytest.raises(StoreError) as info:
        Store.open(url)
    message = str(info.value)
    assert "\n" not in message
    assert SECRET not in message
    return message


def test_unreachable_server() -> None:
    message = open_error(f"postgresql+psycopg://deploy:{SECRET}@127.0.0.1:1/shipyard")
    assert message.startswith("cannot open state database postgresql+psycopg://deploy:***@127.0.0.1:1/shipyard: ")
    assert "refused" in message.lower()


def test_unknown_host() -> None:
    message = open_error(f"postgresql+psycopg://deploy:{SECRET}@no-such-host.invalid/shipyard")
    assert "no-such-host.invalid" in message


@pytest.mark.postgres
def test_rejected_login(pg_server_url: str) -> None:
    """The throwaway cluster trusts everyone, so a role that does not exist stands in for a bad password."""
    url = make_url(pg_server_url).set(username="nobody_here", password=SECRET, database="no_such_db")
    message = open_error(url.render_as_string(hide_password=False))
    assert "nobody_here:***@" in message


def test_malformed_and_unknown_urls() -> None:
    assert open_error("not a url").startswith("invalid state database URL")
    assert "notadb" in open_error("notadb://x")
    assert "missing driver module" in open_error(f"mysql://root:{SECRET}@localhost/x")


def test_unusable_sqlite_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert open_error(f"sqlite:///{blocker}/sub/state.db").startswith("cannot open state database sqlite:")


def test_not_a_database_file(tmp_path: Path) -> None:
    bogus = tmp_path / "state.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    assert "not a database" in open_error(f"sqlite:///{bogus}")


def test_errors_inside_a_session_are_store_errors_and_roll_back(store: Store) -> None:
    with pytest.raises(StoreError) as info, store.session() as s:
        create_deployment(s, service="api", env="dev", revision="a" * 40, strategy="rolling", actor="me",
                          deployment_id="deploy-1")
        s.execute(text("SELECT * FROM no_such_table"))
    assert str(info.value).startswith(f"state database error ({store.url}): ")
    assert "\n" not in str(info.value)
    with store.session() as s:
        assert s.execute(text("SELECT count(*) FROM deployments")).scalar() == 0


@pytest.mark.postgres
def test_store_url_is_masked(pg_server_url: str) -> None:
    url = make_url(pg_server_url).set(password=SECRET)  # trust auth ignores the password
    with Store.open(url.render_as_string(hide_password=False)) as store:
        assert SECRET not in store.url and SECRET not in repr(store) and ":***@" in store.url
        assert store.display_url == store.url


def test_an_empty_state_file_is_refused_not_recreated(tmp_path: Path) -> None:
    empty = tmp_path / "state.db"
    empty.write_bytes(b"")
    message = open_error(f"sqlite:///{empty}")
    assert "is empty (0 bytes)" in message and "restore it from a backup" in message and "remove it" in message
    assert empty.stat().st_size == 0, "the empty file was turned into a new database"


def test_a_sqlite_file_without_shipyard_schema_is_refused(tmp_path: Path) -> None:
    import sqlite3

    foreign = tmp_path / "state.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE notes (x TEXT)")
    con.commit()
    con.close()
    assert "holds no shipyard schema (1 other tables)" in open_error(f"sqlite:///{foreign}")
    with sqlite3.connect(foreign) as con:
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["notes"]


def test_a_corrupt_state_file_says_what_to_do(tmp_path: Path) -> None:
    bogus = tmp_path / "state.db"
    bogus.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    message = open_error(f"sqlite:///{bogus}")
    assert "restore it from a backup" in message and "move it aside" in message


def test_a_new_state_file_is_still_created(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'sub' / 'state.db'}") as store, store.session() as s:
        assert s.execute(text("SELECT count(*) FROM deployments")).scalar() == 0
    with Store.open(f"sqlite:///{tmp_path / 'sub' / 'state.db'}") as store, store.session() as s:   # and reopened
        assert s.execute(text("SELECT count(*) FROM deployments")).scalar() == 0


def test_state_urls_are_checked_and_anchored(tmp_path: Path) -> None:
    from shipyard.store.db import anchored, url_problem

    assert url_problem("sqlite:///x.db") is None and url_problem("postgresql+psycopg://u@h/db") is None
    assert "invalid database URL" in (url_problem("not a url") or "")
    assert "unknown database 'notadb'" in (url_problem(f"notadb://u:{SECRET}@h/x") or "")
    assert SECRET not in (url_problem(f"notadb://u:{SECRET}@h/x") or "")
    assert "in-memory" in (url_problem("sqlite://") or "") and "in-memory" in (url_problem("sqlite:///:memory:") or "")
    assert anchored("sqlite:///.shipyard/state.db", tmp_path) == f"sqlite:///{tmp_path}/.shipyard/state.db"
    assert anchored("sqlite:////abs/state.db", tmp_path) == "sqlite:////abs/state.db"
    assert anchored(f"postgresql+psycopg://u:{SECRET}@h/db", tmp_path) == f"postgresql+psycopg://u:{SECRET}@h/db"
