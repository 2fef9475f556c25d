"""Run a user's configured command (build, hook, migrate) with a timeout, capturing its output.

The command text comes from the user's own shipyard.yaml, so it runs through `/bin/sh -c` as a single argv
element (the same trust as a CI script); values shipyard supplies travel in the environment, never spliced
into the command text. The child gets its own process group so a timeout kills everything it spawned.
`run_argv` runs an argv list as it is (the command target: its placeholders filled per argument, no
shell), and can hand each line to a callback as it arrives, so long deploys show their progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable
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
    return await run_argv(shell_argv(command), cwd=cwd, env=env, timeout=timeout)


async def run_argv(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                   on_line: Callable[[str], None] | None = None) -> CommandResult:
    """Run `argv` in `cwd` (see run_command); `on_line` gets each output line as it is written."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    chunks: list[bytes] = []
    size = 0
    partial = b""

    def lines(data: bytes) -> None:
        nonlocal partial
        if on_line is None:
            return
        *whole, partial = (partial + data).split(b"\n")
        for line in whole:
            on_line(line.decode("utf-8", "replace"))

    async def pump() -> None:
        nonlocal size
        assert proc.stdout is not None
        while data := await proc.stdout.read(65536):
            chunks.append(data)
            lines(data)
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
    if partial and on_line is not None:
        on_line(partial.decode("utf-8", "replace"))
    output = b"".join(chunks).decode("utf-8", "replace")
    if timed_out:
        output += f"\n[shipyard: killed after {timeout:g}s timeout]\n"
    return CommandResult(None if timed_out else proc.returncode, output, time.monotonic() - started, timed_out)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
