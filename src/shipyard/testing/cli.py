"""Run the real `shipyard` command as a user would, for tests: a subprocess, no terminal, a timeout.

Each test suite keeps its own environment policy (what it strips, its actor, its width); the call and
what comes back are the same everywhere.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class CliResult:
    """One finished CLI call: what a user would have seen."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float = 0.0

    def __str__(self) -> str:
        return (f"shipyard {' '.join(self.args)} -> exit {self.returncode} in {self.seconds:.1f}s\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"stdout is not JSON:\n{self}") from None

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "shipyard.cli.main", *args]


def run_cli(cwd: Path, *args: str, env: dict[str, str], input: str | None = None,
            timeout: float = 90.0) -> CliResult:
    """`shipyard ARGS` in `cwd`; stdin is `input`, or /dev/null (no terminal, nothing to answer prompts)."""
    t0 = time.monotonic()
    proc = subprocess.run(cli_argv(*args), cwd=cwd, env=env, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    return CliResult(tuple(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
