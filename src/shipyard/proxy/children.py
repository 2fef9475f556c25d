"""The keeper's children: spawn them in one place per kind, and learn when (and how) they end.

Exits are noticed through a pidfd on the event loop. That works the same for a child the keeper
spawned and for a process it adopted (an agent or router left by a previous keeper): for a child, the
exit status is reaped with waitpid; for an adopted process it cannot be, and the caller decides from
what the process left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Child:
    role: str                         # "router", "agent" or "recover"
    pid: int
    popen: subprocess.Popen[bytes] | None = None      # None: adopted, not ours to reap
    state: str = "starting"
    generation: int = 0
    started: float = field(default_factory=time.monotonic)
    pidfd: int | None = None
    channel: Any = None               # routers: their Channel
    hello: asyncio.Future[None] | None = None
    serving: asyncio.Future[None] | None = None
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    returncode: int | None = None     # None: unknown (adopted) or still running

    @property
    def alive(self) -> bool:
        return not self.exited.is_set()

    def signal(self, sig: signal.Signals) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, sig)

    async def wait(self, timeout: float) -> bool:
        """True once exited; after `timeout`, SIGKILL and wait a little more."""
        try:
            await asyncio.wait_for(self.exited.wait(), timeout)
            return True
        except TimeoutError:
            self.signal(signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.exited.wait(), 5.0)
        return False


def spawn(role: str, argv: list[str], log_path: Path, *, pass_fds: tuple[int, ...] = (),
          env: dict[str, str] | None = None, nice: int = 0) -> Child:
    """Start a child in its own session (terminal signals and the keeper's group never reach it),
    output appended to `log_path`. Every process the keeper starts comes through here.

    `nice` lowers the priority of background work (recovery) so it never starves the routers of CPU
    on a small host; it is inherited, so it is never used for the agent (its apps would inherit it)."""
    with open(log_path, "ab") as logf:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True, pass_fds=pass_fds, env=env,
                                 preexec_fn=(lambda: os.nice(nice)) if nice else None)
    return Child(role=role, pid=popen.pid, popen=popen)


def watch(child: Child, on_exit: Callable[[Child], None]) -> None:
    """Call `on_exit(child)` from the loop once it has ended (status reaped when it is ours)."""
    loop = asyncio.get_running_loop()
    try:
        child.pidfd = os.pidfd_open(child.pid)
    except ProcessLookupError:
        loop.call_soon(_ended, child, on_exit)
        return
    loop.add_reader(child.pidfd, _ended, child, on_exit)


def _ended(child: Child, on_exit: Callable[[Child], None]) -> None:
    if child.pidfd is not None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(child.pidfd)
        os.close(child.pidfd)
        child.pidfd = None
    try:
        pid, status = os.waitpid(child.pid, os.WNOHANG)
    except ChildProcessError:           # adopted: its status went to someone else
        pid, status = child.pid, None
    if pid == 0:                        # readable but not yet waitable: look again shortly
        asyncio.get_running_loop().call_later(0.01, _ended, child, on_exit)
        return
    if status is not None:
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.popen is not None:
            child.popen.returncode = child.returncode
    child.exited.set()
    on_exit(child)


def adopt(role: str, pid: int) -> Child | None:
    """A process left by a previous keeper, if it is still there."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return Child(role=role, pid=pid, state="running")


class Backoff:
    """Restart delays for a child that keeps dying: none at first (traffic is waiting), then doubling."""

    def __init__(self, free: int, initial: float, maximum: float, reset_after: float) -> None:
        self.free, self.initial, self.maximum, self.reset_after = free, initial, maximum, reset_after
        self.failures = 0

    def next_delay(self, lived: float) -> float:
        if lived >= self.reset_after:
            self.failures = 0
        self.failures += 1
        if self.failures <= self.free:
            return 0.0
        return float(min(self.maximum, self.initial * 2 ** (self.failures - self.free - 1)))
