"""actionlint, the GitHub Actions workflow checker, for the tests of `shipyard ci github`.

The binary comes with the test extras (pyproject.toml); it is looked for beside the running Python
first (the venv's bin/, where pip puts it), then on PATH. Under CI=true a missing binary is a failure of
the caller, never a skip (tests/conftest's rule for every real tool).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def actionlint_binary() -> str | None:
    beside = Path(sys.executable).parent / "actionlint"
    return str(beside) if beside.is_file() else shutil.which("actionlint")


@dataclass(frozen=True)
class LintResult:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def lint(binary: str, paths: Iterable[Path], *, timeout: float = 60.0) -> LintResult:
    """Run actionlint on `paths` (no shellcheck or pyflakes: the commands in `run:` are the user's, and
    what is checked here is the workflow shipyard wrote around them)."""
    proc = subprocess.run([binary, "-no-color", "-shellcheck=", "-pyflakes=", *map(str, paths)],
                          capture_output=True, text=True, timeout=timeout)
    return LintResult(proc.returncode, (proc.stdout + proc.stderr).strip())
