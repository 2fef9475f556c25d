"""Pure parts of the store: URL masking, text capping, owner strings and the UTC column type."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from shipyard.store import current_owner, default_url, owner_is_dead
from shipyard.store.db import mask_url
from shipyard.store.models import UTCDateTime
from shipyard.store.owner import parse_owner, process_start_time
from shipyard.store.sql import cap_text, clean_text

HOST = socket.gethostname()


def test_mask_url_hides_password() -> None:
    masked = mask_url("postgresql+psycopg://deploy:s3cr3t@db.example.com:5432/shipyard")
    assert "s3cr3t" not in masked
    assert masked == "postgresql+psycopg://deploy:***@db.example.com:5432/shipyard"


def test_mask_url_unparsable_still_hides_credentials() -> None:
    assert "s3cr3t" not in mask_url("weird://deploy:s3cr3t@host:notaport/db")


def test_default_url_is_under_project(tmp_path: Path) -> None:
    assert default_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/.shipyard/state.db"


def test_cap_text_keeps_tail_within_limit() -> None:
    text = "".join(f"line {n}\n" for n in range(100_000))
    capped = cap_text(text, 4096)
    assert capped is not None
    assert len(capped.encode()) <= 4096
    assert capped.startswith("[... ") and "bytes truncated" in capped.splitlines()[0]
    assert capped.endswith("line 99999\n")
    assert cap_text("short", 4096) == "short"
    assert cap_text(None, 10) is None


def test_cap_text_does_not_split_multibyte_characters() -> None:
    capped = cap_text("é" * 10_000, 1001)
    assert capped is not None
    capped.encode("utf-8")  # valid text
    assert set(capped.splitlines()[1]) == {"é"}


def test_clean_text_removes_nul() -> None:
    assert clean_text("a\x00b") == "a\ufffdb"


def test_current_owner_is_alive_and_parsable() -> None:
    owner = current_owner()
    parsed = parse_owner(owner)
    assert parsed is not None
    assert (parsed.host, parsed.pid) == (HOST, os.getpid())
    assert parsed.start == process_start_time(os.getpid())
    assert not owner_is_dead(owner)


def test_exited_process_is_dead() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    assert owner_is_dead(f"{HOST}:{int(done.stdout)}:12345")


def test_reused_pid_is_dead() -> None:
    """Same pid, different start time: the pid was recycled, the original owner is gone."""
    assert owner_is_dead(f"{HOST}:{os.getpid()}:1")


def test_zombie_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = f"{HOST}:{child.pid}:{process_start_time(child.pid)}"
    deadline = time.monotonic() + 10
    while not owner_is_dead(owner):
        assert time.monotonic() < deadline, "child never became a zombie"
        time.sleep(0.01)
    child.wait()
    assert owner_is_dead(owner)


def test_other_host_or_garbage_is_never_judged_dead() -> None:
    assert not owner_is_dead("some-other-host.invalid:1:1")
    assert not owner_is_dead("not an owner")
    assert not owner_is_dead("")


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.dialect()], ids=["sqlite", "postgresql"])
def test_utc_datetime_normalizes(dialect: object) -> None:
    col = UTCDateTime()
    seoul = timezone(timedelta(hours=9))
    bound = col.process_bind_param(datetime(2024, 5, 1, 18, 0, tzinfo=seoul), dialect)  # type: ignore[arg-type]
    assert bound is not None
    assert bound.replace(tzinfo=UTC) == datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    back = col.process_result_value(bound, dialect)  # type: ignore[arg-type]
    assert back == datetime(2024, 5, 1, 9, 0, tzinfo=UTC) and back.tzinfo is UTC
    with pytest.raises(ValueError, match="naive"):
        col.process_bind_param(datetime(2024, 5, 1), dialect)  # type: ignore[arg-type]
