"""Where the agent starts processes: app instances, and the log processes that mask their output.

One place per kind of process, so what every app (or log process) starts with, its environment above
all, is decided here and nowhere else. Each runs in its own session: one killpg reaches an app's
`sh -c` children too, and both outlive the agent (see supervisor.py).
"""

from __future__ import annotations

import contextlib
import os
import subprocess

from shipyard.agent import logpipe
from shipyard.agent.spec import build_env
from shipyard.agent.state import InstanceRecord


def app(rec: InstanceRecord, stdout: int) -> subprocess.Popen[bytes]:
    """Start the instance's command with its environment; its output goes to `stdout` (a fd)."""
    return subprocess.Popen(rec.argv, cwd=rec.cwd, env=build_env(rec), stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)


def app_through_logpipe(rec: InstanceRecord, previous: subprocess.Popen[bytes] | None
                        ) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """App output -> pipe -> logpipe (masks rec.redact) -> the log; the agent keeps neither end.
    Returns (app, log process)."""
    if previous is not None:
        previous.poll()                    # reap the previous run's log process (it saw EOF)
    read_end, write_end = os.pipe()
    try:
        pipe = subprocess.Popen(logpipe.command(rec.log_path), env=logpipe.environment(rec.redact),
                                stdin=read_end, stdout=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        try:
            return app(rec, write_end), pipe
        except BaseException:
            os.close(write_end)            # EOF: the log process ends by itself; reap it
            write_end = -1
            with contextlib.suppress(subprocess.TimeoutExpired):
                pipe.wait(timeout=5)
            raise
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
