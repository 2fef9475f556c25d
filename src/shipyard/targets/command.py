"""Deploy through commands shipyard does not understand (CDK, Terraform, Serverless): `deploy` activates a
release, `rollback` (or the previous release's `deploy`) goes back, `status` is the health check.

Each command is split like a shell would when the config loads, and its placeholders are filled inside
each argument, so a value can never become a second argument or a shell word: no shell runs it. Values
that may be secret travel in the environment only; the output is streamed into the deployment's events
(the journal masks secrets in it) and the process group is killed at the timeout.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.config.release_targets import COMMAND_PLACEHOLDERS
from shipyard.config.release_targets import CommandTarget as CommandConfig
from shipyard.engine.commands import CommandResult, run_argv
from shipyard.errors import OSFailure, TargetError
from shipyard.targets.base import ReleaseSpec

_BRACED = re.compile(r"\{(" + "|".join(COMMAND_PLACEHOLDERS) + r")\}")
STREAMED_LINES = 200    # lines of one command recorded as events; all of it (capped) is the step's output


def command_argv(command: str, values: Mapping[str, str]) -> list[str]:
    """`command` split like a shell would, each placeholder filled within its own argument (pure)."""
    return [_BRACED.sub(lambda m: values[m.group(1)], arg) for arg in shlex.split(command)]


def placeholders(spec: ReleaseSpec) -> dict[str, str]:
    return {"sha": spec.revision, "revision": spec.revision[:8], "env": spec.env, "service": spec.service}


class CommandTarget:
    capabilities = frozenset({"release", "rollback_needs_release"})

    def __init__(self, config: CommandConfig, service: str, env: str, root: Path) -> None:
        self.cfg, self.service, self.env, self.root = config, service, env, root
        self._last: ReleaseSpec | None = None     # what `status` runs with: the release activated last

    async def preflight(self) -> list[str]:
        problems = []
        for name in ("deploy", "rollback", "status"):
            text = getattr(self.cfg, name)
            if text is None:
                continue
            program = shlex.split(text)[0]
            if "/" not in program and shutil.which(program) is None:
                problems.append(f"{name}: {program} is not on PATH")
            elif program.startswith("/") and not os.access(program, os.X_OK):
                problems.append(f"{name}: {program} is not an executable file")
            # A relative path (./deploy.sh) is the release's: it exists only once the release is built.
        return problems

    async def activate(self, spec: ReleaseSpec) -> dict[str, Any]:
        result, argv = await self._run("deploy", self.cfg.deploy, spec, self.cfg.timeout)
        self._last = spec
        return self._record("deploy", spec, argv, result)

    async def rollback(self, to: dict[str, Any], spec: ReleaseSpec) -> dict[str, Any]:
        which = "rollback" if self.cfg.rollback else "deploy"
        result, argv = await self._run(which, self.cfg.rollback or self.cfg.deploy, spec, self.cfg.timeout)
        self._last = spec
        return self._record(which, spec, argv, result)

    async def status(self) -> str | None:
        if self.cfg.status is None:
            return None
        spec = self._last
        if spec is None:
            return None     # nothing activated by this process: no release's placeholders to fill in
        try:
            await self._run("status", self.cfg.status, spec, self.cfg.status_timeout, stream=False)
        except TargetError as exc:
            return str(exc)
        return None

    async def prune(self, keep: int, in_use: set[str]) -> dict[str, Any]:
        return {}           # the tool keeps its own artifacts (stacks, state): nothing of shipyard's to prune

    # ---------------------------------------------------------------------------------------------
    def _cwd(self, spec: ReleaseSpec) -> Path:
        base = spec.release if spec.release.is_dir() else self.root
        return base / self.cfg.cwd if self.cfg.cwd else base

    async def _run(self, name: str, command: str, spec: ReleaseSpec, timeout: float, *,
                   stream: bool = True) -> tuple[CommandResult, list[str]]:
        argv = command_argv(command, placeholders(spec))
        cwd = self._cwd(spec)
        env = {**spec.environ, **self.cfg.env}

        streamed = 0

        def line(text: str) -> None:
            nonlocal streamed
            streamed += 1
            if streamed <= STREAMED_LINES:
                spec.progress(f"{name}: {text}", {"command": name, "line": text})
            elif streamed == STREAMED_LINES + 1:
                spec.progress(f"{name}: more output in the step's log", {"command": name, "truncated": True})
        try:
            result = await run_argv(argv, cwd=cwd, env=env, timeout=timeout, on_line=line if stream else None)
        except FileNotFoundError as exc:
            where = "" if Path(cwd).is_dir() else f" (no directory {cwd})"
            raise TargetError(f"{name}: cannot run {argv[0]}: not found{where}") from exc
        except OSError as exc:
            raise OSFailure.of(exc, f"running the {name} command") from exc
        if not result.ok:
            why = f"timed out after {timeout:g}s (process group killed)" if result.timed_out \
                else f"exited {result.returncode}"
            err = TargetError(f"{name} command {why}: {result.tail(2)}")
            err.output = result.output  # type: ignore[attr-defined]
            raise err
        return result, argv

    def _record(self, name: str, spec: ReleaseSpec, argv: list[str], result: CommandResult) -> dict[str, Any]:
        return {"revision": spec.revision, "command": name, "argv": argv, "returncode": result.returncode,
                "seconds": round(result.seconds, 3), "output": result.output}
