"""Helpers for the secrets integration tests (no tests here): the real CLI in a subprocess and a byte
scanner."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from shipyard.testing.cli import CliResult as Result
from shipyard.testing.cli import run_cli as shared_run_cli

CLI_TIMEOUT = 120.0


def new_master_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "AWS_", "GITHUB_"))}
    env.update(CI="true", PYTHONUNBUFFERED="1", NO_COLOR="1", TERM="dumb", COLUMNS="100", SHIPYARD_ACTOR="tester")
    env.update(extra)
    return env


def run_cli(cwd: Path, *args: str, env: dict[str, str], stdin: str | None = None,
            timeout: float = CLI_TIMEOUT) -> Result:
    return shared_run_cli(cwd, *args, env=env, input=stdin, timeout=timeout)


def scan(root: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(file, needle) for every file under `root` whose raw bytes contain a needle."""
    hits = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [(str(path), n) for n in needles if n.encode() in data]
    return hits
