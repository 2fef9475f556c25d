"""Run a user's configured command (build, hook, migrate) with a timeout, capturing its output.

The command text comes from the user's own shipyard.yaml, so it runs through `/bin/sh -c` as a single argv
element (the same trust as a CI script); values shipyard supplies travel in the environment, never spliced
into the command text. The child gets its own process group so a timeout kills everything it spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

OUTPUT_CAP = 256 * 1024


@dataclass(frozen=True)
class CommandResult:
    returncode: int | None      # None when it was killed for running past its timeout
    output: str
    seconds: float
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 5) -> str:
        return " | ".join(line for line in self.output.strip().splitlines()[-lines:])


def shell_argv(command: str) -> list[str]:
    return ["/bin/sh", "-c", command]


async def run_command(command: str, *, cwd: Path, env: dict[str, str], timeout: float) -> CommandResult:
    """Run `command` in `cwd`; stdout and stderr interleaved, capped at OUTPUT_CAP (keeping the tail)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *shell_argv(command), cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    chunks: list[bytes] = []
    size = 0

    async def pump() -> None:
        nonlocal size
        assert proc.stdout is not None
        while data := await proc.stdout.read(65536):
            chunks.append(data)
            size += len(data)
            while size > OUTPUT_CAP and len(chunks) > 1:
                size -= len(chunks.pop(0))

    timed_out = False
    try:
        async with asyncio.timeout(timeout):      # not wait_for: it can swallow a racing cancel on 3.11
            await asyncio.gather(pump(), proc.wait())
    except TimeoutError:
        timed_out = True
        _kill_group(proc.pid)
        await proc.wait()
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        raise
    output = b"".join(chunks).decode("utf-8", "replace")
    if timed_out:
        output += f"\n[shipyard: killed after {timeout:g}s timeout]\n"
    return CommandResult(None if timed_out else proc.returncode, output, time.monotonic() - started, timed_out)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
