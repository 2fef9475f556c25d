"""shipyard.testing.processes with real child processes: ready, exited early, never ready, SIGTERM ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shipyard.testing.processes import server_process, start_process, stop_process
from shipyard.testing.wait import wait_until


def _exited(proc: subprocess.Popen[bytes]) -> RuntimeError:
    return RuntimeError(f"exited {proc.returncode}")


def test_ready_yields_the_running_process_and_stops_it_after(tmp_path: Path) -> None:
    flag = tmp_path / "up"
    argv = [sys.executable, "-c", f"import pathlib, time; pathlib.Path({str(flag)!r}).touch(); time.sleep(60)"]
    with server_process(argv, ready=flag.exists, exited=_exited, timeout=15, what="the flag") as proc:
        assert proc.poll() is None
    assert proc.returncode == -signal.SIGTERM


def test_a_process_that_exits_first_raises_what_exited_says(tmp_path: Path) -> None:
    log = tmp_path / "log"
    argv = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"]
    with (pytest.raises(RuntimeError, match="bad config"),
          server_process(argv, log=log, ready=lambda: False, timeout=15, what="never",
                         exited=lambda p: RuntimeError(log.read_text()))):
        pytest.fail("yielded a process that exited")


def test_never_ready_is_a_timeout_and_the_process_is_stopped(tmp_path: Path) -> None:
    pid = tmp_path / "pid"
    argv = ["sh", "-c", 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 60', str(pid)]
    with (pytest.raises(AssertionError, match=r"timed out after 1s waiting for the socket"),
          server_process(argv, ready=lambda: False, exited=_exited, timeout=1.0, what="the socket")):
        pytest.fail("yielded a process that never got ready")
    wait_until(pid.exists, 15, "the pid file")      # written before the process was stopped, or never
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid.read_text()), 0)


def test_a_process_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    flag = tmp_path / "trapped"
    code = (f"import pathlib, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"pathlib.Path({str(flag)!r}).touch(); time.sleep(60)")
    proc = start_process([sys.executable, "-c", code], log=tmp_path / "log")
    try:
        wait_until(flag.exists, 15, "the SIGTERM trap")
    finally:
        stop_process(proc, timeout=0.2)
    assert proc.returncode == -signal.SIGKILL
