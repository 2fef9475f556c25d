"""LogFile: the last lines of an instance's log, then what is appended, across truncation and rotation.

Real files in a temp directory; time is passed in, so idle and retire rules are tested without waiting.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.targets.logfile import BLOCK, IDLE, RETIRE_AFTER, LogFile


def _append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


@pytest.mark.parametrize(("content", "count", "expected"), [
    ("a\nb\nc\n", 2, ["b", "c"]),
    ("a\nb\nc\n", 10, ["a", "b", "c"]),
    ("a\nb\nc", 2, ["b", "c"]),                 # an unterminated last line is a line when not following
    ("only", 5, ["only"]),
    ("", 5, []),
    ("\n\nx\n", 3, ["", "", "x"]),
    ("a\r\nb\r\n", 1, ["b"]),
    ("a\nb\n", 0, []),
])
def test_tail(tmp_path: Path, content: str, count: int, expected: list[str]) -> None:
    path = tmp_path / "i.log"
    path.write_text(content)
    assert LogFile(str(path)).tail(count, now=0, keep_partial=False) == expected


def test_tail_of_a_file_larger_than_one_block(tmp_path: Path) -> None:
    path = tmp_path / "i.log"
    lines = [f"line {n} " + "x" * 100 for n in range(3 * BLOCK // 100)]
    path.write_text("\n".join(lines) + "\n")
    assert LogFile(str(path)).tail(1500, now=0, keep_partial=False) == lines[-1500:]
    assert LogFile(str(path)).tail(len(lines) + 5, now=0, keep_partial=False) == lines


def test_missing_file_is_empty_then_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "later.log"
    log = LogFile(str(path))
    assert log.tail(10, now=0, keep_partial=True) == []
    assert log.read(1) == []
    _append(path, "first\nsecond\n")
    assert log.read(2) == ["first", "second"]


def test_follow_appends_and_holds_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "i.log"
    path.write_text("old\nhalf")
    log = LogFile(str(path))
    assert log.tail(10, now=0, keep_partial=True) == ["old"]
    assert log.read(0.1) == []
    _append(path, " done\nnext")
    assert log.read(0.2) == ["half done"]
    assert log.read(0.2 + IDLE / 2) == []                       # not idle long enough yet
    assert log.read(0.21 + IDLE) == ["next"]                    # given out after IDLE
    _append(path, "\n")
    assert log.read(5) == [""]
    _append(path, b"bad \xff bytes\n")
    assert log.read(6) == ["bad \ufffd bytes"]
    _append(path, "tail without newline")
    assert log.read(7) == [] and log.finish() == ["tail without newline"]


def test_a_partial_line_that_may_start_a_secret_is_held(tmp_path: Path) -> None:
    path = tmp_path / "i.log"
    path.write_text("")
    log = LogFile(str(path))
    log.tail(0, now=0, keep_partial=True)
    _append(path, "token=hun")
    assert log.read(0) == []
    assert log.read(IDLE, hold=lambda text: 3 if text.endswith("hun") else 0) == ["token="]
    _append(path, "ter2\n")
    assert log.read(IDLE + 1) == ["hunter2"]


def test_truncation_starts_again_at_the_beginning(tmp_path: Path) -> None:
    path = tmp_path / "i.log"
    path.write_text("one\ntwo\nthree\n")
    log = LogFile(str(path))
    assert log.tail(1, now=0, keep_partial=True) == ["three"]
    os.truncate(path, 0)                                         # logrotate copytruncate
    _append(path, "after\n")
    assert log.read(1) == ["after"]
    assert log.pop_notes() == ["truncated"]


def test_rotation_reads_the_old_file_to_its_end_and_the_new_one_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "i.log"
    path.write_text("before\n")
    log = LogFile(str(path))
    log.tail(5, now=0, keep_partial=True)
    writer = open(path, "ab")  # noqa: SIM115 - held across the rename, as the agent holds its log
    try:
        os.rename(path, tmp_path / "i.log.1")
        assert log.read(1) == []                                 # successor not there yet: no error
        writer.write(b"still to the old file\n")
        writer.flush()
        _append(path, "in the new file\n")
        assert sorted(log.read(2)) == ["in the new file", "still to the old file"]
        assert log.pop_notes() == ["rotated"]
        writer.write(b"old again\n")
        writer.flush()
        assert log.read(3) == ["old again"]                      # nothing the old file gets is lost
        _append(path, "new again\n")
        assert log.read(3 + RETIRE_AFTER + 1) == ["new again"]
        assert len(log.handles) == 1                             # the quiet old file is let go
    finally:
        writer.close()
        log.close()
