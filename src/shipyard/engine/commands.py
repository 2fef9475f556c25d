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
    result, _ = await _run(shell_argv(command), cwd=cwd, env=env, timeout=timeout, report=False)
    return result


async def run_argv(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                   on_line: Callable[[str], None] | None = None) -> CommandResult:
    """Run `argv` in `cwd` (see run_command); `on_line` gets each output line as it is written."""
    result, _ = await _run(argv, cwd=cwd, env=env, timeout=timeout, report=False, on_line=on_line)
    return result


async def run_report(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                     ) -> tuple[CommandResult, bytes]:
    """Run a tool that prints a report on stdout (a scanner's JSON): the result holds its stderr, and
    stdout comes back whole, apart (up to REPORT_CAP), so progress lines never corrupt the report."""
    return await _run(argv, cwd=cwd, env=env, timeout=timeout, report=True)


REPORT_CAP = 64 * 1024 * 1024


async def _run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
               report: bool, on_line: Callable[[str], None] | None = None) -> tuple[CommandResult, bytes]:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=str(cwd), env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if report else asyncio.subprocess.STDOUT, start_new_session=True)
    chunks: list[bytes] = []
    kept: list[bytes] = []
    size = 0
    partial = b""

    def lines(data: bytes) -> None:
        nonlocal partial
        if on_line is None:
            return
        *whole, partial = (partial + data).split(b"\n")
        for line in whole:
            on_line(line.decode("utf-8", "replace"))

    async def pump(stream: asyncio.StreamReader | None) -> None:
        nonlocal size
        assert stream is not None
        while data := await stream.read(65536):
            chunks.append(data)
            lines(data)
            size += len(data)
            while size > OUTPUT_CAP and len(chunks) > 1:
                size -= len(chunks.pop(0))

    async def keep(stream: asyncio.StreamReader | None) -> None:
        assert stream is not None
        total = 0
        while data := await stream.read(65536):
            total += len(data)
            if total <= REPORT_CAP:
                kept.append(data)

    timed_out = False
    pumps = [pump(proc.stderr), keep(proc.stdout)] if report else [pump(proc.stdout)]
    try:
        async with asyncio.timeout(timeout):      # not wait_for: it can swallow a racing cancel on 3.11
            await asyncio.gather(*pumps, proc.wait())
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
    result = CommandResult(None if timed_out else proc.returncode, output, time.monotonic() - started, timed_out)
    return result, b"".join(kept)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
