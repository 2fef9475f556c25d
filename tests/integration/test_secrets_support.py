"""Helpers for the secrets integration tests (no tests here): the real CLI in a subprocess, with the
`secrets` and `env` command groups attached the way cli/main.py registers them, and a byte scanner."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLI_TIMEOUT = 120.0
# `python -m shipyard.cli.main` plus the groups this feature adds (a no-op once main.py registers them).
SHIM = """\
import sys
from shipyard.cli import env, main, secrets
names = {g.name for g in main.app.registered_groups}
for name, group in (("secrets", secrets.app), ("env", env.app)):
    if name not in names:
        main.app.add_typer(group, name=name)
sys.argv[0] = "shipyard"
main.run()
"""


def new_master_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "AWS_", "GITHUB_"))}
    env.update(CI="true", PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb", COLUMNS="100", SHIPYARD_ACTOR="tester")
    env.update(extra)
    return env


@dataclass
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"shipyard {' '.join(self.args)} -> {self.returncode}\n--- stdout\n{self.stdout}\n"
                f"--- stderr\n{self.stderr}")


def run_cli(cwd: Path, *args: str, env: dict[str, str], stdin: str | None = None,
            timeout: float = CLI_TIMEOUT) -> Result:
    proc = subprocess.run([sys.executable, "-c", SHIM, *args], cwd=cwd, env=env, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    return Result(args, proc.returncode, proc.stdout, proc.stderr)


def scan(root: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every file under `root` whose raw bytes contain a needle."""
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [(str(path), n) for n in needles if n.encode() in data]
    return hits


def wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
