"""Keeps app processes running: start, notice exits, restart with backoff, stop, expire, re-adopt.

Usable without HTTP (the admin API is a thin layer over it), so tests can drive it in-process.

Why it is built this way:
- Each app runs in its own session (start_new_session) so one killpg reaches `sh -c` children too, and
  so the app survives the agent: a deploy must not go down because the agent was restarted.
- Output goes to a log file the app itself holds open, not through a pipe the agent reads: logs keep
  flowing when the agent is gone, and a dead reader can never block or SIGPIPE the app. An instance
  with secret values to mask writes to a pipe instead, read by its own small log process (logpipe.py)
  that, like the app, outlives the agent and ends when the app's output ends.
- Exits are noticed through a pidfd on the event loop (no polling), which also works for processes the
  agent adopted from a previous agent and therefore cannot waitpid(); own children are reaped via Popen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.agent import logpipe, procs, pruning, spawn
from shipyard.agent.errors import AgentRequestError, ConflictError, NotFoundError
from shipyard.agent.spec import Backoff, InstanceSpec, new_instance_id, take_redact
from shipyard.agent.state import BACKOFF, EXITED, LIVE, RUNNING, STOPPED, STOPPING, TERMINAL, InstanceRecord
from shipyard.domain.launch import fill_argv  # `{instance}` in argv: only the agent knows the id
from shipyard.ipc import free_port

log = logging.getLogger(__name__)

_FALLBACK_POLL = 0.25     # seconds, only where the kernel has no pidfd_open
_KILL_GRACE = 10.0        # how long SIGKILL may take before we give up waiting


@dataclass
class _Runtime:
    """Per-instance state that means nothing after an agent restart, hence never persisted."""

    exited: asyncio.Event = field(default_factory=asyncio.Event)
    popen: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    poll_handle: asyncio.TimerHandle | None = None
    restart_handle: asyncio.TimerHandle | None = None
    expiry_handle: asyncio.TimerHandle | None = None
    stop_task: asyncio.Task[dict[str, Any]] | None = None
    failures: int = 0
    logpipe: subprocess.Popen[bytes] | None = None


class Supervisor:
    """All instances of one agent. Call from the event loop thread only."""

    def __init__(self, logs_dir: Path, *, on_change: Callable[[], None] | None = None,
                 backoff: Backoff | None = None, retention: float = pruning.MAX_AGE,
                 keep_stopped: int = pruning.KEEP_PER_ENV) -> None:
        self.logs_dir = logs_dir
        self.backoff = backoff or Backoff()
        self.retention = retention          # how long stopped instances stay listed (with their logs)
        self.keep_stopped = keep_stopped    # and how many per (service, env) at most
        self._on_change = on_change or (lambda: None)
        self._recs: dict[str, InstanceRecord] = {}
        self._rt: dict[str, _Runtime] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- queries -------------------------------------------------------------------------------
    def get(self, instance_id: str) -> InstanceRecord:
        try:
            return self._recs[instance_id]
        except KeyError:
            raise NotFoundError(f"no instance {instance_id!r}") from None

    def find(self, service: str | None = None, env: str | None = None, revision: str | None = None,
             state: str | None = None) -> list[InstanceRecord]:
        return [r for r in self._recs.values()
                if (service is None or r.service == service) and (env is None or r.env == env)
                and (revision is None or r.revision == revision or r.revision.startswith(revision))
                and (state is None or r.state == state)]

    def records(self) -> list[InstanceRecord]:
        return list(self._recs.values())

    # ---- start ---------------------------------------------------------------------------------
    async def start(self, spec: InstanceSpec) -> InstanceRecord:
        """Start a new instance; a bad argv or cwd is reported to the caller, not retried.

        Idempotent under a caller-chosen `spec.id`: asking again (a retry after the agent died mid-call)
        returns the instance already started instead of a second one. The record is persisted before
        the process exists, so an agent killed at any point leaves either no trace of the call or a
        record the next agent adopts (or starts); never an app nobody supervises.
        """
        if spec.id is not None and spec.id in self._recs:
            rec = self._recs[spec.id]
            if (rec.service, rec.env, rec.revision) != (spec.service, spec.env, spec.revision):
                raise ConflictError(f"instance id {spec.id!r} is already used by {rec.service}/{rec.env} "
                                    f"{rec.revision[:8]}")
            return rec
        if not spec.argv or not all(isinstance(a, str) for a in spec.argv):
            raise AgentRequestError("argv must be a non-empty list of strings")
        used = {r.port for r in self._recs.values() if r.state not in TERMINAL}
        if spec.port is not None and (spec.port in used or procs.port_in_use(spec.port)):
            # Refused now with a clear reason, instead of a crash loop the caller would have to decode.
            raise ConflictError(f"port {spec.port} is already in use on 127.0.0.1")
        port = spec.port if spec.port is not None else free_port(exclude=used)
        iid = spec.id or new_instance_id(spec.service, spec.env, spec.revision)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        environ = dict(spec.environ)
        redact = [*spec.redact, *take_redact(environ)]
        rec = InstanceRecord(
            id=iid, service=spec.service, env=spec.env, revision=spec.revision, cwd=spec.cwd,
            argv=fill_argv(spec.argv, {"instance": iid}), port=port, log_path=str(self.logs_dir / f"{iid}.log"),
            deployment=spec.deployment, environ=environ, stop_timeout=spec.stop_timeout,
            labels=dict(spec.labels), restart=spec.restart, redact=redact)
        rt = _Runtime()
        self._recs[iid], self._rt[iid] = rec, rt
        self._changed()
        try:
            self._spawn(rec, rt)
        except (OSError, ValueError) as exc:
            del self._recs[iid], self._rt[iid]
            self._changed()
            raise AgentRequestError(f"cannot start {spec.argv[0]!r} in {spec.cwd!r}: {exc}") from exc
        self._changed()
        return rec

    def _spawn(self, rec: InstanceRecord, rt: _Runtime) -> None:
        with open(rec.log_path, "ab") as logf:
            logf.write(_marker(f"starting {rec.id} revision {rec.revision} on port {rec.port}"
                               + (f" (restart {rec.restarts})" if rec.restarts else "")))
            logf.flush()
            if rec.redact:
                popen, rt.logpipe = spawn.app_through_logpipe(rec, rt.logpipe)
            else:
                popen = spawn.app(rec, logf.fileno())
        rec.pid, rec.pid_start = popen.pid, procs.start_time(popen.pid)
        rec.state, rec.started_at, rec.next_restart_at = RUNNING, time.time(), None
        rec.exit_code = rec.signal = None
        rec.killed, rec.stopped_at = False, None
        rt.popen, rt.exited = popen, asyncio.Event()
        self._watch(rec, rt)

    def _watch(self, rec: InstanceRecord, rt: _Runtime, *, verify: bool = False) -> bool:
        """Arrange for `_on_exit` when rec.pid exits: pidfd where possible, else a slow poll.

        With `verify` (adoption), the pid must still be the recorded process: the pidfd is opened
        first and the start time checked after, so the process cannot be swapped between the two.
        """
        assert rec.pid is not None
        loop = asyncio.get_running_loop()
        try:
            rt.pidfd = procs.open_pidfd(rec.pid)
        except ProcessLookupError:
            if verify:
                return False
            loop.call_soon(self._on_exit, rec.id)
            return True
        if verify and not procs.is_running(rec.pid, rec.pid_start):
            self._unwatch(rt)
            return False
        if rt.pidfd is not None:
            loop.add_reader(rt.pidfd, self._on_exit, rec.id)
        else:
            rt.poll_handle = loop.call_later(_FALLBACK_POLL, self._poll, rec.id)
        return True

    def _poll(self, iid: str) -> None:
        rec, rt = self._recs.get(iid), self._rt.get(iid)
        if rec is None or rt is None or rec.pid is None:
            return
        gone = rt.popen.poll() is not None if rt.popen else not procs.is_running(rec.pid, rec.pid_start)
        if gone:
            self._on_exit(iid)
        else:
            rt.poll_handle = asyncio.get_running_loop().call_later(_FALLBACK_POLL, self._poll, iid)

    def _unwatch(self, rt: _Runtime) -> None:
        if rt.pidfd is not None:
            asyncio.get_running_loop().remove_reader(rt.pidfd)
            os.close(rt.pidfd)
            rt.pidfd = None
        if rt.poll_handle is not None:
            rt.poll_handle.cancel()
            rt.poll_handle = None

    # ---- exits and restarts --------------------------------------------------------------------
    def _on_exit(self, iid: str) -> None:
        rec, rt = self._recs.get(iid), self._rt.get(iid)
        if rec is None or rt is None or rec.pid is None:
            return
        self._unwatch(rt)
        code: int | None = None
        if rt.popen is not None:
            code = rt.popen.poll()
            if code is None:            # not waitable yet (or poll() raced a thread): look again shortly
                asyncio.get_running_loop().call_later(0.01, self._on_exit, iid)
                return
        pid = rec.pid
        rec.exit_code, rec.signal = (code, None) if code is None or code >= 0 else (None, -code)
        rec.pid, rec.pid_start, rt.popen = None, None, None
        if rt.logpipe is not None:
            rt.logpipe.poll()                  # gone too once the app's output ended; reap if so
        rt.exited.set()
        how = ("status unknown: not our child" if code is None
               else f"code {rec.exit_code}" if rec.signal is None else f"signal {rec.signal}")
        _append(rec.log_path, f"pid {pid} exited ({how})")
        if rec.state in LIVE:
            # The leader died on its own; its children would hold the port against the restart.
            procs.signal_group(pid, signal.SIGKILL)
            log.warning("instance %s (pid %s) exited unexpectedly (%s)", iid, pid, how)
            if rec.restart:
                self._schedule_restart(rec, rt)
            else:
                rec.state, rec.stopped_at = EXITED, time.time()
            self._changed()

    def _schedule_restart(self, rec: InstanceRecord, rt: _Runtime) -> None:
        if rec.started_at is not None and time.time() - rec.started_at >= self.backoff.reset_after:
            rt.failures = 0
        delay = self.backoff.delay(rt.failures)
        rt.failures += 1
        rec.state, rec.next_restart_at = BACKOFF, time.time() + delay
        rt.restart_handle = asyncio.get_running_loop().call_later(delay, self._restart, rec.id)

    def _restart(self, iid: str) -> None:
        rec, rt = self._recs.get(iid), self._rt.get(iid)
        if rec is None or rt is None or rec.state != BACKOFF:
            return
        rt.restart_handle = None
        rec.restarts += 1
        try:
            self._spawn(rec, rt)
        except (OSError, ValueError) as exc:
            _append(rec.log_path, f"cannot start: {exc}")
            log.error("restart of %s failed: %s", iid, exc)
            rec.started_at = time.time()
            self._schedule_restart(rec, rt)
        self._changed()

    # ---- stop and expiry -----------------------------------------------------------------------
    async def stop(self, instance_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Stop an instance (SIGTERM to its group, SIGKILL after `timeout`); returns how it ended.

        Concurrent calls share one stop, so an expiry firing during a manual stop does no harm.
        """
        rec, rt = self.get(instance_id), self._rt[instance_id]
        if rt.stop_task is None:
            if rec.state in TERMINAL:
                return rec.stop_result()
            rt.stop_task = asyncio.create_task(self._stop(rec, rt, timeout))
        return await asyncio.shield(rt.stop_task)

    async def _stop(self, rec: InstanceRecord, rt: _Runtime, timeout: float | None) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        budget = rec.stop_timeout if timeout is None else max(0.0, timeout)
        deadline = loop.time() + budget
        for handle in (rt.restart_handle, rt.expiry_handle):
            if handle is not None:
                handle.cancel()
        rt.restart_handle = rt.expiry_handle = None
        rec.state, rec.next_restart_at = STOPPING, None
        self._changed()
        killed = False
        pgid = rec.pid
        if pgid is not None and not rt.exited.is_set():
            procs.signal_group(pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(rt.exited.wait(), budget)
            except TimeoutError:
                killed = procs.signal_group(pgid, signal.SIGKILL)
                try:
                    await asyncio.wait_for(rt.exited.wait(), _KILL_GRACE)
                except TimeoutError:
                    log.error("instance %s (pid %s) survived SIGKILL", rec.id, pgid)
        if pgid is not None:
            killed = await procs.finish_group(pgid, deadline, _KILL_GRACE) or killed
        await logpipe.drained(rt.logpipe)      # the app's last output is in the log before "stopped"
        rec.state, rec.killed, rec.stopped_at = STOPPED, killed, time.time()
        _append(rec.log_path, f"stopped{' (killed)' if killed else ''}")
        self._changed()
        return rec.stop_result()

    def expire(self, instance_id: str, at: float | None) -> InstanceRecord:
        """Stop the instance at wall-clock `at` (None cancels); persisted, so it outlives the agent."""
        rec, rt = self.get(instance_id), self._rt[instance_id]
        if rec.state not in LIVE:
            raise ConflictError(f"instance {instance_id} is {rec.state}")
        rec.expires_at = at
        self._arm_expiry(rec, rt)
        self._changed()
        return rec

    def _arm_expiry(self, rec: InstanceRecord, rt: _Runtime) -> None:
        if rt.expiry_handle is not None:
            rt.expiry_handle.cancel()
            rt.expiry_handle = None
        if rec.expires_at is not None:
            delay = max(0.0, rec.expires_at - time.time())
            rt.expiry_handle = asyncio.get_running_loop().call_later(delay, self._expire_now, rec.id)

    def _expire_now(self, iid: str) -> None:
        log.info("instance %s expired", iid)
        self._spawn_task(self.stop(iid))

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- agent lifecycle -----------------------------------------------------------------------
    def restore(self, records: Iterable[InstanceRecord]) -> None:
        """Take over instances from a previous agent: adopt live processes, start the dead ones again.

        A recorded pid counts only with the same /proc start time, so a reused pid is never adopted
        (nor signalled).
        """
        for rec in records:
            rt = _Runtime()
            self._recs[rec.id], self._rt[rec.id] = rec, rt
            if rec.state in TERMINAL:
                continue
            if rec.pid is None:     # the last agent died between recording the start and the pid
                rec.pid, rec.pid_start = procs.find_instance(rec.id) or (None, None)
            adopted = rec.pid is not None and self._watch(rec, rt, verify=True)
            if adopted:
                log.info("adopted %s (pid %s)", rec.id, rec.pid)
            else:
                rec.pid = rec.pid_start = None
            if rec.expires_at is not None and rec.expires_at <= time.time():
                rec.state = STOPPING           # expired while no agent was watching
            if rec.state == STOPPING:
                if not adopted:
                    rt.exited.set()
                self._spawn_task(self.stop(rec.id))
                continue
            if not adopted:
                log.info("instance %s is not running any more: starting it again", rec.id)
                rec.state = BACKOFF
                self._restart(rec.id)
            self._arm_expiry(rec, rt)
        for path in pruning.orphan_logs(self.logs_dir, set(self._recs), self.retention):
            pruning.remove_log(str(path))
        self._changed()

    async def stop_all(self) -> None:
        """Stop every instance in parallel (agent shutdown): total time is the slowest stop, not the sum."""
        ids = [r.id for r in self._recs.values() if r.state not in TERMINAL]
        await asyncio.gather(*(self.stop(i) for i in ids), return_exceptions=True)

    def detach(self) -> None:
        """Let go of every process without stopping it, for a later agent to adopt."""
        for rt in self._rt.values():
            self._unwatch(rt)
            for handle in (rt.restart_handle, rt.expiry_handle):
                if handle is not None:
                    handle.cancel()
        for task in list(self._tasks):
            task.cancel()

    def prune(self) -> bool:
        """Forget stopped/exited instances past their retention (time or count), with their logs."""
        drop = pruning.expired(self._recs.values(), time.time(), self.retention, self.keep_stopped)
        for iid in drop:
            rec = self._recs.pop(iid)
            self._rt.pop(iid, None)
            pruning.remove_log(rec.log_path)
        return bool(drop)

    def _changed(self) -> None:
        self.prune()
        self._on_change()


def _marker(text: str) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return f"--- shipyard {stamp}: {text} ---\n".encode()


def _append(path: str, text: str) -> None:
    """Agent notes in the app's log (O_APPEND, so they interleave safely with the app's own writes)."""
    with contextlib.suppress(OSError), open(path, "ab") as f:
        f.write(_marker(text))
