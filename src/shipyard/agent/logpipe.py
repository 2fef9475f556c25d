"""`python -m shipyard.agent.logpipe LOG`: copy an app's output from stdin to LOG with secrets masked.

The agent starts one per instance that has values to mask, reading the pipe the app writes its
stdout/stderr to. It runs in its own session, so it outlives an agent restart exactly like the app
does, and it ends when the app (and every child holding the pipe) has exited: end of file, not a
signal, so the app's last words are never lost. The values arrive in the environment variable
LOGPIPE_ENV, never in argv: /proc/<pid>/cmdline is world-readable, /proc/<pid>/environ only by the
user who already owns the app (and its environment holding the same values).

Output is masked per line; a line without its newline yet is flushed after IDLE seconds, holding
back any end that could be the start of a secret, so a value written in two pieces is still seen whole.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys

from shipyard.secrets.redact import Redactor
from shipyard.secrets.scrub import PYTHON, scrubbed

LOGPIPE_ENV = "SHIPYARD_LOGPIPE_VALUES"
IDLE = 0.2                 # seconds before a partial line is written out
MAX_LINE = 64 * 1024       # a longer "line" is written out in pieces
_CODEC = ("utf-8", "surrogateescape")     # any bytes round-trip unchanged, only the text is matched


def command(log_path: str) -> list[str]:
    """argv of the log process for one instance's log (the values travel in `environment`, never here)."""
    return [sys.executable, "-m", "shipyard.agent.logpipe", log_path]


def environment(values: list[str]) -> dict[str, str]:
    env = scrubbed(allow=PYTHON)
    env[LOGPIPE_ENV] = json.dumps(values)
    return env


async def drained(proc: subprocess.Popen[bytes] | None, budget: float = 2.0) -> None:
    """Wait (briefly) for a log process to write the app's last output and exit (and reap it)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + budget
    while proc is not None and proc.poll() is None and loop.time() < end:
        await asyncio.sleep(0.01)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]


class LinePump:
    """Redact a byte stream line by line (pure, so it can be tested without processes)."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.buf = b""

    def feed(self, chunk: bytes) -> bytes:
        """Add input; returns what can be written now (complete lines, or pieces of an overlong one)."""
        self.buf += chunk
        cut = self.redactor.ready(self.buf)       # complete lines, less a wrapped secret's start
        out = b""
        if cut:
            out, self.buf = self.redactor.redact_bytes(self.buf[:cut]), self.buf[cut:]
        if len(self.buf) > MAX_LINE:
            out += self.partial()
        return out

    def partial(self) -> bytes:
        """The buffered partial line, masked, except an end that may continue into a secret."""
        text = self.redactor.redact(self.buf.decode(*_CODEC))
        keep = self.redactor.pending(text)
        ready, rest = (text[:-keep], text[-keep:]) if keep else (text, "")
        self.buf = rest.encode(*_CODEC)
        return ready.encode(*_CODEC)

    def finish(self) -> bytes:
        out = self.redactor.redact_bytes(self.buf)
        self.buf = b""
        return out


def pump(src: int, dst: int, redactor: Redactor) -> None:
    lines = LinePump(redactor)
    while True:
        ready, _, _ = select.select([src], [], [], IDLE if lines.buf else None)
        if not ready:
            _write_all(dst, lines.partial())
            continue
        try:
            chunk = os.read(src, 65536)
        except InterruptedError:
            continue
        if not chunk:
            break
        _write_all(dst, lines.feed(chunk))
    _write_all(dst, lines.finish())


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m shipyard.agent.logpipe LOGFILE  (values to mask in $" + LOGPIPE_ENV + ")",
              file=sys.stderr)
        return 2
    values = json.loads(os.environ.pop(LOGPIPE_ENV, "[]") or "[]")
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)      # the app's end of the pipe decides when we are done
    dst = os.open(argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        pump(0, dst, Redactor(v for v in values if isinstance(v, str)))
    finally:
        os.close(dst)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
