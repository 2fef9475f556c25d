"""Read an instance's log file as it grows: its last lines, then what is appended, like `tail -F`.

The local agent appends each instance's output to one file (`log_path` in its instance records). A
follower must survive what operators do to such files:

- truncation (logrotate's `copytruncate`): the file gets shorter than what was read; reading starts
  again at its beginning;
- rotation by rename: a new file appears at the path. The writer may still hold the old one (the
  agent keeps its file open), so the old file is read too, until it has been quiet for RETIRE_AFTER
  seconds while the new one received data: nothing either file gets is lost;
- the file not existing yet (an instance that has not written anything) or vanishing for a moment.

Lines come out as text (undecodable bytes replaced), without their newline. A partial line (no
newline yet) is held until it is completed, or given out after IDLE seconds of silence, minus an end
the caller says may be the start of a secret (`hold`), so a value written in two pieces is masked whole.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

BLOCK = 64 * 1024           # read size, backwards when looking for the last lines, forwards after
READ_BUDGET = 1024 * 1024   # bytes read from one file per poll, so one chatty instance cannot starve the rest
IDLE = 0.5                  # seconds before a partial line is given out
RETIRE_AFTER = 30.0         # a rotated-away file is dropped once quiet this long while the new one grows


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace").removesuffix("\r")


@dataclass
class _Handle:
    file: BinaryIO
    ino: int
    last_data: float
    buf: bytes = b""

    def close(self) -> None:
        self.file.close()


@dataclass
class LogFile:
    path: str
    handles: list[_Handle] = field(default_factory=list)      # the current file last; older ones rotated away
    notes: list[str] = field(default_factory=list)            # "truncated", "rotated": for the reader to show

    # ---- the start: the last lines ------------------------------------------------------------------

    def tail(self, count: int, *, now: float, keep_partial: bool) -> list[str]:
        """The last `count` complete lines (and a final partial one unless `keep_partial`, which keeps it
        for the next `read`); later reads continue from the end."""
        handle = self._open(now)
        if handle is None:
            return []
        end = handle.file.seek(0, os.SEEK_END)
        start, chunk = end, b""
        # Enough bytes for `count` complete lines: count + 1 newlines, or the start of the file.
        while start > 0 and chunk.count(b"\n") <= count:
            step = min(BLOCK, start)
            start -= step
            handle.file.seek(start)
            chunk = handle.file.read(step) + chunk
        handle.file.seek(end)
        *complete, partial = chunk.split(b"\n")     # `partial` follows the last newline (b"" if none)
        if start > 0 and complete:
            complete = complete[1:]                 # it began mid-line
        lines = [_text(raw) for raw in complete]
        if partial and keep_partial:
            handle.buf = partial
        elif partial:
            lines.append(_text(partial))
        return lines[-count:] if count > 0 else []

    # ---- following ---------------------------------------------------------------------------------------

    def read(self, now: float, hold: Callable[[str], int] = lambda _: 0) -> list[str]:
        """Lines appended since the last call, from every file still read; see the module docstring."""
        self._check_path(now)
        out: list[str] = []
        for handle in list(self.handles):
            out += self._read_one(handle, now, hold)
        self._retire(now)
        return out

    def finish(self) -> list[str]:
        """Whatever partial lines are left (the end of the output), then close every file."""
        out = [_text(h.buf) for h in self.handles if h.buf]
        self.close()
        return out

    def close(self) -> None:
        for handle in self.handles:
            handle.close()
        self.handles.clear()

    def pop_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    # ---- inside ----------------------------------------------------------------------------------------

    def _open(self, now: float) -> _Handle | None:
        try:
            file = open(self.path, "rb")  # noqa: SIM115 - kept open while following, closed by close()
        except FileNotFoundError:
            return None
        handle = _Handle(file, os.fstat(file.fileno()).st_ino, now)
        self.handles.append(handle)
        return handle

    def _check_path(self, now: float) -> None:
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return                              # moved away, its successor not there yet: keep reading the old
        if not self.handles:
            self._open(now)                     # it appeared: everything in it is new
        elif self.handles[-1].ino != ino:
            self.notes.append("rotated")
            self._open(now)

    def _read_one(self, handle: _Handle, now: float, hold: Callable[[str], int]) -> list[str]:
        out: list[str] = []
        pos = handle.file.tell()
        if os.fstat(handle.file.fileno()).st_size < pos:
            self.notes.append("truncated")
            if handle.buf:
                out.append(_text(handle.buf))
                handle.buf = b""
            handle.file.seek(0)
        data = handle.file.read(READ_BUDGET)
        if data:
            handle.last_data = now
            handle.buf += data
            body, sep, handle.buf = handle.buf.rpartition(b"\n")
            if sep:
                out += [_text(raw) for raw in body.split(b"\n")]
        elif handle.buf and now - handle.last_data >= IDLE:
            text = _text(handle.buf)
            keep = hold(text)
            ready, rest = (text[:-keep], text[-keep:]) if keep else (text, "")
            if ready:
                out.append(ready)
                handle.buf = rest.encode("utf-8")
        return out

    def _retire(self, now: float) -> None:
        if len(self.handles) < 2:
            return
        current = self.handles[-1]
        for old in self.handles[:-1]:
            if now - old.last_data >= RETIRE_AFTER and current.last_data > old.last_data:
                old.close()
                self.handles.remove(old)
