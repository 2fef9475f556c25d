"""The one place fleet code runs git: its command line, asynchronously, argv lists, never a shell.

Going through the real `git` binary (not a library) is deliberate: the user's credential helpers, ssh
config, hooks and `includeIf` settings apply exactly as when they type the command themselves. What we do
change is only what keeps a batch of parallel commands from hanging or lying:
- no terminal prompts (GIT_TERMINAL_PROMPT=0, GCM_INTERACTIVE=never), stdin from /dev/null and a new session
  without a controlling terminal, so an ssh passphrase prompt fails instead of waiting forever;
- LC_ALL=C so the messages we parse are the English ones;
- a timeout per command; a cancelled or timed-out command is killed, not left behind.
Failures become `GitError` with git's own last stderr line, prefixed by the repo name, so the CLI can
print one line per repo.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import GitError
from shipyard.secrets.scrub import GIT, scrubbed

GIT_ENV: Mapping[str, str] = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never", "LC_ALL": "C",
                              "GIT_MERGE_AUTOEDIT": "no", "GIT_EDITOR": "true"}
LOCAL_TIMEOUT = 120.0       # a local command (merge-tree on a big repo) that takes longer is stuck
NETWORK_TIMEOUT = 600.0     # fetch/push of a large repo over a slow link


@dataclass(frozen=True)
class GitResult:
    """What one git command did: its exit code and both outputs (decoded, not stripped)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def last_error_line(self) -> str:
        """The line of stderr (else stdout) that usually says what went wrong: git puts the cause last,
        after hints; lines starting with `hint:` are advice, not the error."""
        for stream in (self.stderr, self.stdout):
            lines = [ln.strip() for ln in stream.splitlines()
                     if ln.strip() and not ln.lstrip().startswith("hint:")]
            if lines:
                return lines[-1]
        return f"exit status {self.returncode}"


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every fleet git command runs with: the user's, plus the no-prompt settings."""
    return scrubbed(allow=GIT, extra={**GIT_ENV, **(extra or {})})


# Processes are started from worker threads with subprocess.Popen rather than the event loop's own
# subprocess support: Popen uses vfork, while uvloop (which the CLI runs on) forks the whole interpreter
# inside the loop, blocking it ~5 ms per git command; with hundreds of commands per promotion that cost
# was most of a 20-repo run. The loop only waits on futures, so --jobs stays the only limit.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="shipyard-git")


def _run_blocking(argv: Sequence[str], cwd: Path | None, timeout: float, stdin: bytes | None,
                  env: Mapping[str, str] | None, started: list[subprocess.Popen[bytes]]) -> GitResult:
    proc = subprocess.Popen(list(argv), cwd=str(cwd) if cwd else None,
                            env=dict(env) if env is not None else git_env(),
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    started.append(proc)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return GitResult(tuple(argv), -9, "", f"timed out after {timeout:g}s")
    return GitResult(tuple(argv), proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))


async def run_process(argv: Sequence[str], *, cwd: Path | None, timeout: float,
                      stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> GitResult:
    """Run one command to completion; kill it on timeout or cancellation (never leave one running)."""
    started: list[subprocess.Popen[bytes]] = []
    future = asyncio.get_running_loop().run_in_executor(_SPAWNER, _run_blocking, argv, cwd, timeout, stdin, env,
                                                        started)
    try:
        return await asyncio.shield(future)
    except FileNotFoundError as exc:
        missing = argv[0] if not cwd or cwd.is_dir() else str(cwd)
        raise GitError(f"cannot run {argv[0]}: {missing} not found") from exc
    except OSError as exc:
        raise GitError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    except asyncio.CancelledError:
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(Exception):
            await future
        raise


@dataclass(frozen=True)
class Git:
    """git bound to one repository directory (a working tree or a bare repo) and a name for messages."""

    cwd: Path
    name: str = ""

    async def run(self, *args: str, check: bool = True, stdin: str | None = None,
                  timeout: float = LOCAL_TIMEOUT, env: Mapping[str, str] | None = None) -> GitResult:
        """`git <args>` in this repo; with `check`, a non-zero exit raises GitError naming repo and command."""
        result = await run_process(("git", *args), cwd=self.cwd, timeout=timeout,
                                   stdin=stdin.encode() if stdin is not None else None,
                                   env=git_env(env))
        if check and not result.ok:
            raise GitError(self.describe_failure(result))
        return result

    async def out(self, *args: str, timeout: float = LOCAL_TIMEOUT) -> str:
        """stdout of a command that must succeed, with surrounding whitespace removed."""
        return (await self.run(*args, timeout=timeout)).stdout.strip()

    async def network(self, *args: str, check: bool = True) -> GitResult:
        """A command that talks to a remote (fetch, push, ls-remote): the longer timeout applies."""
        return await self.run(*args, check=check, timeout=NETWORK_TIMEOUT)

    async def sha(self, rev: str) -> str | None:
        """The object name `rev` resolves to, or None if it does not exist."""
        res = await self.run("rev-parse", "--verify", "--quiet", "--end-of-options", rev, check=False)
        return res.stdout.strip() or None if res.ok else None

    def describe_failure(self, result: GitResult) -> str:
        cmd = result.argv[1] if len(result.argv) > 1 else "git"
        where = f"{self.name}: " if self.name else ""
        return f"{where}git {cmd} failed: {result.last_error_line()}"
