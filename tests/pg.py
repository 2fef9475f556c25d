"""A real PostgreSQL server for tests: the one in SHIPYARD_TEST_PG_URL, or a throwaway cluster.

The throwaway cluster is made with the Debian `postgresql` package's initdb/pg_ctl (trust auth, fsync off,
TCP on 127.0.0.1 and a free port, its unix socket inside its own temp dir) and removed afterwards.
PostgreSQL refuses to run as root, so under root its commands run as the `postgres` OS user.
Whether a missing server skips or fails is decided by the caller (tests/conftest.py): under CI=true it fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url

from shipyard.ipc import free_port

ENV_URL = "SHIPYARD_TEST_PG_URL"
START_DEADLINE = 60.0


class PostgresUnavailable(Exception):
    """No server given and no PostgreSQL binaries found: skip locally, fail under CI."""


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin, else the directory of a pg_ctl on PATH."""
    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    return None




def libpq_dsn(url: str | URL) -> str:
    """The psycopg connection string for a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class TempCluster:
    """initdb + pg_ctl start in a temp dir; `stop()` removes every trace."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="shipyard-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                raise PostgresUnavailable("running as root and there is no 'postgres' OS user to run "
                                          "PostgreSQL as") from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *argv: str, timeout: float = 120) -> None:
        done = subprocess.run([*self._as_user, *argv], capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}\n{log}")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> str:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--locale=C", "-N")
        last: Exception | None = None
        for _attempt in range(3):  # the free port may be taken between probing and binding
            self.port = free_port()
            options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                       f"-c unix_socket_directories={self.root} -c fsync=off -c synchronous_commit=off "
                       "-c full_page_writes=off")
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                          "-o", options, "-w", "-t", str(int(START_DEADLINE)), "start",
                          timeout=START_DEADLINE + 10)
                wait_ready(self.url, deadline=START_DEADLINE)
                return self.url
            except (RuntimeError, TimeoutError) as err:
                last = err
                self._stop_server()
        raise RuntimeError(f"could not start PostgreSQL from {self.bindir}: {last}")

    def _stop_server(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w",
                          "stop", timeout=60)

    def stop(self) -> None:
        self._stop_server()
        shutil.rmtree(self.root, ignore_errors=True)


def wait_ready(url: str, *, deadline: float) -> None:
    """Block until the server accepts a query, or raise TimeoutError after `deadline` seconds."""
    end = time.monotonic() + deadline
    last: Exception | None = None
    while time.monotonic() < end:
        try:
            with psycopg.connect(libpq_dsn(url), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.Error as err:
            last = err
            time.sleep(0.1)
    raise TimeoutError(f"PostgreSQL at {make_url(url).render_as_string()} not ready: {last}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a URL with rights to create databases and schemas; raise PostgresUnavailable if none."""
    given = os.environ.get(ENV_URL)
    if given:
        wait_ready(given, deadline=10)
        yield given
        return
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable("no PostgreSQL found (no initdb/pg_ctl under /usr/lib/postgresql/*/bin "
                                  f"or on PATH); install the 'postgresql' package or set {ENV_URL}")
    cluster = TempCluster(bindir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new database for one test session (or, without CREATEDB rights, the server URL's own)."""
    name = f"shipyard_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(libpq_dsn(server_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.errors.InsufficientPrivilege:
        yield server_url
        return
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_dsn(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_schema(database_url: str) -> Iterator[str]:
    """An empty schema for one test, made the connection's search_path through the URL, dropped after.

    Cheaper than a database per test, and it isolates tests even on a shared server.
    """
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield (make_url(database_url).update_query_dict({"options": f"-csearch_path={schema}"})
               .render_as_string(hide_password=False))
    finally:
        with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '10s'")
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
