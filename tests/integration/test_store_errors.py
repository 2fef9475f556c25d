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
