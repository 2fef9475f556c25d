"""Fixtures shared across the suite. Keep this file to fixtures others can reuse; append, don't rewrite.

Databases:
- `pg_server_url`: session-scoped URL of a real PostgreSQL (SHIPYARD_TEST_PG_URL, or a throwaway cluster);
  skipped when none can be found, except under CI=true, where that is a failure.
- `pg_url`: a fresh empty schema on that server for one test.
- `db_url`: parametrized over "sqlite" and "postgresql" (marked `postgres`): every test using it, or
  `store`, runs on both backends.
- `store`: an open, migrated `Store` on `db_url`; `sqlite_store` when one backend is enough.

Hosts (tests/nethosts.py, see docs/testing.md):
- `nethost_pool`: session-scoped `NetHosts`, one bridge (`.bridge_address`, e.g. 198.18.0.1) on this machine.
- `nethosts`: a `HostFactory` for one test: `add(name)` -> a running `TestHost` (network namespace, private
  /srv, sshd), removed after the test. Needs root and openssh-server: skipped without, failed under CI=true.

Session start compiles shipyard's modules (see `pytest_sessionstart`).
"""

from __future__ import annotations

import compileall
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import pg
import shipyard
from nethosts import HostFactory, NetHosts, open_pool
from shipyard.agent.spec import Backoff
from shipyard.agent.supervisor import Supervisor
from shipyard.store import Store
from shipyard.testing.servers import missing_server

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A PostgreSQL database for this test session; tests get their own schema in it via `pg_url`."""
    with contextlib.ExitStack() as stack:
        try:
            server_url = stack.enter_context(pg.postgres_server())
        except pg.PostgresUnavailable as err:
            missing = str(err)
        else:
            yield stack.enter_context(pg.scratch_database(server_url))
            return
    missing_server(f"PostgreSQL is unavailable: {missing}")


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    with pg.scratch_schema(pg_server_url) as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend in turn (PostgreSQL started only when a test asks for it)."""
    return str(request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        yield opened


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    with Store.open(sqlite_url) as opened:
        yield opened


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A real moto server (AWS APIs over HTTP) on 127.0.0.1, for boto3 with endpoint_url."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
async def sup(tmp_path: Path) -> AsyncIterator[Supervisor]:
    """An in-process Supervisor with fast restart backoff; every instance is stopped afterwards."""
    s = Supervisor(tmp_path / "logs", backoff=Backoff(initial=0.05, maximum=0.2, reset_after=30))
    try:
        yield s
    finally:
        await s.stop_all()


@pytest.fixture(scope="session")
def nethost_pool() -> Iterator[NetHosts]:
    """The session's bridge of namespaced SSH hosts (tests/nethosts.py); tests add hosts through `nethosts`."""
    pool = open_pool("sy")
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def nethosts(nethost_pool: NetHosts) -> Iterator[HostFactory]:
    """`add(name)` -> a running `TestHost` on the session bridge; every host added is removed afterwards."""
    factory = HostFactory(nethost_pool)
    try:
        yield factory
    finally:
        factory.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile shipyard's modules to bytecode once, before the suite starts its hundreds of shipyard
    processes (CLI calls, agents, keepers, routers). With PYTHONDONTWRITEBYTECODE set, as in CI images,
    Python never caches bytecode of the editable install itself, so each of them compiled the source of
    every module it imported again (~0.3 s a process). Stale files are harmless: Python checks the source."""
    compileall.compile_dir(Path(shipyard.__file__).resolve().parent, quiet=1)
