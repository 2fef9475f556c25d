"""A test server's process (nginx, HAProxy, sshd, ...): started on this machine or inside a namespaced test
host (`host.popen`, tests/nethosts.py), waited for with a deadline, and stopped: SIGTERM, a bounded wait,
then SIGKILL, so no test leaves a server behind however it ends."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from shipyard.testing.wait import wait_until


def start_process(argv: list[str], *, host: Any = None, log: Path | None = None,
                  **popen: Any) -> subprocess.Popen[Any]:
    """`argv` running here, or inside `host` when given; with `log`, its stdout and stderr go to that file
    (which the caller's process does not keep open)."""
    spawn = host.popen if host is not None else subprocess.Popen
    if log is None:
        return spawn(argv, **popen)
    with log.open("wb") as out:
        return spawn(argv, stdout=out, stderr=subprocess.STDOUT, **popen)


def wait_ready(proc: subprocess.Popen[Any], ready: Callable[[], object], *, timeout: float, what: str,
               exited: Callable[[subprocess.Popen[Any]], BaseException], interval: float = 0.05) -> None:
    """Poll `ready` until it holds (AssertionError naming `what` after `timeout` seconds); the process
    exiting first, or as it gets ready, raises `exited(proc)` (which says why, from its log)."""
    def check() -> object:
        if proc.poll() is not None:
            raise exited(proc)
        return ready()

    wait_until(check, timeout, what, interval=interval)
    if proc.poll() is not None:
        raise exited(proc)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, up to `timeout` seconds for it to end, then SIGKILL (which it cannot ignore)."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def server_process(argv: list[str], *, ready: Callable[[], object],
                   exited: Callable[[subprocess.Popen[Any]], BaseException], timeout: float, what: str,
                   host: Any = None, log: Path | None = None, interval: float = 0.05,
                   **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """start_process, wait_ready, yield the process, and stop_process when the block ends (also when the
    wait fails)."""
    proc = start_process(argv, host=host, log=log, **popen)
    try:
        wait_ready(proc, ready, timeout=timeout, what=what, exited=exited, interval=interval)
        yield proc
    finally:
        stop_process(proc)
