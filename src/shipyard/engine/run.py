"""Execute one deployment's plan against a target and a router, and roll it back when it fails.

Everything the run knows about instances is re-read from the target and the router (the agent is the
source of truth), plus a small persisted context: which instances were serving before (`old`) and which
this run started or adopted (`new`). That makes every step idempotent, so a run resumed or rolled back by
`shipyard recover` after its owner died acts on what really exists, not on what a dead process believed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from shipyard.domain.deployment import DeployState, StepState
from shipyard.domain.plan import (
    Analyze,
    Drain,
    Migrate,
    Pause,
    Plan,
    Prepare,
    RetireOld,
    Route,
    RunHook,
    StartNew,
    Step,
    StopOld,
    WaitHealthy,
)
from shipyard.domain.types import Instance
from shipyard.engine.analysis import Analysis
from shipyard.engine.commands import CommandResult, run_command
from shipyard.engine.journal import Journal
from shipyard.engine.runstate import RunContext, weights
from shipyard.engine.settings import HookSpec, ServiceSettings
from shipyard.errors import HookError, OSFailure, ReleaseError, ShipyardError
from shipyard.health.checker import HealthMonitor, wait_healthy
from shipyard.health.probes import Prober, ProbeResult
from shipyard.monitoring.providers.router import RouterProvider
from shipyard.releases.store import ReleaseStore
from shipyard.routers.base import Router, WeightedBackend
from shipyard.secrets.redact import REDACT_ENV
from shipyard.targets.base import LaunchSpec, Target

FAILPOINT_ENV = "SHIPYARD_FAILPOINT"   # fault injection for crash tests: "after-step:N" kills this process


class StepFailed(ShipyardError):
    pass


class Run:
    def __init__(self, *, deployment_id: str, revision: str, settings: ServiceSettings, target: Target,
                 router: Router, releases: ReleaseStore, journal: Journal, context: RunContext,
                 actor: str = "", metrics: Any = None) -> None:
        self.id = deployment_id
        self.metrics = metrics          # MetricProvider for alarms/judge; None = the router's own counters
        self.analysis: Analysis | None = None   # created by the first Analyze step, kept for the whole run
        self.revision = revision
        self.s = settings
        self.target = target
        self.router = router
        self.releases = releases
        self.journal = journal
        self.ctx = context
        self.actor = actor
        self.stopped = False
        self.front: str | None = None   # the router's front address, as ensure() reported it

    # ---- instances -------------------------------------------------------------------------------

    async def _all(self) -> list[Instance]:
        return await self.target.instances()

    async def new_instances(self) -> list[Instance]:
        """This run's instances: those it recorded, plus any the agent labels with its id (started just
        before a crash, before the context was written)."""
        known = set(self.ctx.new)
        found = [i for i in await self._all() if i.id in known or i.deployment == self.id]
        order = {iid: n for n, iid in enumerate(self.ctx.new)}
        return sorted(found, key=lambda i: order.get(i.id, len(order)))

    async def old_instances(self) -> list[Instance]:
        by_id = {i.id: i for i in await self._all()}
        return [by_id[iid] for iid in self.ctx.old if iid in by_id]

    def save_context(self) -> None:
        self.journal.update(context=self.ctx.to_dict())

    @cached_property
    def release_dir(self) -> Path:
        """This run's release directory (computed on first use, inside a step: it reads the release key)."""
        return self.release_of(self.revision)

    def build_environ(self, revision: str) -> dict[str, str]:
        """What a build of `revision` sees, and so what its release is keyed by (releases.store): nothing
        that changes from one deployment to the next, or every deploy would build again."""
        base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER")}
        return {**base, **self.s.environ, "SHIPYARD_SERVICE": self.s.service, "SHIPYARD_ENV": self.s.env,
                "SHIPYARD_REVISION": revision}

    def release_of(self, revision: str) -> Path:
        """The release directory `revision` is (or will be) built in with this run's inputs."""
        return self.releases.path(self.s.service, revision, build=self.s.build, env=self.build_environ(revision))

    async def prepare(self, revision: str) -> CommandResult | None:
        """Export and build `revision` unless its release (same inputs) is built already."""
        _, result = await self.releases.prepare(self.s.source, self.s.service, revision, build=self.s.build,
                                                env=self.build_environ(revision), timeout=self.s.build_timeout,
                                                redact=self.journal.redact)
        return result

    def environ(self) -> dict[str, str]:
        """What hooks and instances see: the build's variables plus this deployment's id and release dir."""
        return {**self.build_environ(self.revision), "SHIPYARD_DEPLOYMENT": self.id,
                "SHIPYARD_RELEASE_DIR": str(self.release_dir)}

    # ---- the forward run -------------------------------------------------------------------------

    async def execute(self, plan: Plan, start_at: int = 0) -> None:
        """Run steps from `start_at`; raises StepFailed (after recording it) on the first failure."""
        for idx in range(start_at, len(plan.steps)):
            if self.stopped:        # cancelled: never start another step, even if a cancel was swallowed
                raise asyncio.CancelledError
            step = plan.steps[idx]
            self.journal.step_started("deploy", idx, step)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races a result.
                async with asyncio.timeout(self._timeout(step)):
                    detail = await self._do(step)
            except TimeoutError:
                msg = f"step {idx + 1} ({step.describe()}) timed out after {self._timeout(step):g}s"
                self.journal.step_finished("deploy", idx, StepState.FAILED, error=msg)
                raise StepFailed(msg) from None
            except (ShipyardError, OSError) as raised:
                # An OSError (a path too long, a disk full) fails the step like any other error, so the run
                # rolls back instead of dying with a traceback and staying in progress.
                exc = _one_line(raised)
                output = getattr(exc, "output", None)
                self.journal.step_finished("deploy", idx, StepState.FAILED, error=str(exc), output=output,
                                           detail=getattr(exc, "detail", None))
                raise StepFailed(f"step {idx + 1} ({step.describe()}): {exc}") from raised
            output = detail.pop("output", None) if detail else None
            self.journal.step_finished("deploy", idx, StepState.SUCCEEDED, output=output, detail=detail)
            _failpoint(f"after-step:{idx}")

    def _timeout(self, step: Step) -> float:
        if isinstance(step, RunHook):
            return self.s.hooks[step.hook].timeout + 5
        if isinstance(step, Migrate) and self.s.migrate:
            return self.s.migrate.timeout + 5
        if isinstance(step, Prepare):
            return self.s.build_timeout + 60
        if isinstance(step, (Pause, Analyze)):
            return step.seconds + self.s.step_timeout
        if isinstance(step, WaitHealthy):
            return max(self.s.step_timeout, self.s.health_wait + 5)
        return self.s.step_timeout

    async def _do(self, step: Step) -> dict[str, Any]:
        if isinstance(step, Prepare):
            result = await self.prepare(self.revision)
            if self.s.publish_dir and not (self.release_dir / self.s.publish_dir).is_dir():
                raise ReleaseError(f"publish_dir {self.s.publish_dir!r} is not a directory in the release of "
                                   f"{self.revision[:8]} after the build (does `build` write it?)")
            return {"output": result.output if result else "release already built", "built": bool(result)}
        if isinstance(step, RunHook):
            return await self._hook(step.hook, self.s.hooks[step.hook])
        if isinstance(step, Migrate):
            assert self.s.migrate is not None
            return await self._hook("migrate", self.s.migrate)
        if isinstance(step, StartNew):
            return await self._start_new(step.total)
        if isinstance(step, WaitHealthy):
            news = await self.new_instances()
            await self._wait_healthy([i.address for i in news])
            return {"healthy": [i.address for i in news]}
        if isinstance(step, Route):
            return await self._route(step)
        if isinstance(step, Drain):
            return await self._drain(step.timeout)
        if isinstance(step, RetireOld):
            return await self._retire(step.keep)
        if isinstance(step, StopOld):
            olds = await self.old_instances()
            await self.target.stop(olds, self.s.stop_timeout)
            return {"stopped": [i.id for i in olds]}
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return {}
        if isinstance(step, Analyze):
            return await self._analyze(step.seconds)
        raise StepFailed(f"unknown step kind {step.kind}")

    async def _wait_healthy(self, addresses: list[str]) -> None:
        """wait_healthy, with every state change and each instance's first failed probe as events."""
        async with _EventProber(self.journal) as prober:
            await wait_healthy(self.s.health, addresses, deadline=self.s.health_wait, prober=prober,
                               on_change=lambda a, st, r: self.journal.event(
                                   "health.changed", f"{a} {st.value}: {r.detail}", address=a, state=st.value,
                                   detail=r.detail))

    async def _hook(self, name: str, spec: HookSpec, *, release_dir: Path | None = None) -> dict[str, Any]:
        cwd = release_dir or self.release_dir
        if not cwd.exists():
            cwd = self.releases.root
            cwd.mkdir(parents=True, exist_ok=True)
        result = await run_command(spec.command, cwd=cwd, env={**self.environ(), "SHIPYARD_HOOK": name},
                                   timeout=spec.timeout)
        self.journal.event("hook.finished", f"{name}: exit {result.returncode}", hook=name,
                           returncode=result.returncode, seconds=round(result.seconds, 3))
        if not result.ok:
            why = f"timed out after {spec.timeout:g}s" if result.timed_out else f"exited {result.returncode}"
            err = HookError(f"hook {name} {why}: {result.tail(2)}")
            err.output = result.output  # type: ignore[attr-defined]
            raise err
        return {"output": result.output, "returncode": 0, "seconds": round(result.seconds, 3)}

    async def _start_new(self, total: int) -> dict[str, Any]:
        have = await self.new_instances()
        missing = total - len(have)
        started: list[Instance] = []
        if missing > 0:
            started = await self.target.start(self._spec(self.revision, self.id), missing)
            self.ctx.new += [i.id for i in started]
            self.save_context()
            for inst in started:
                self.journal.event("instance.started", f"{inst.id} at {inst.address}", instance=inst.id,
                                   address=inst.address, revision=self.revision)
        return {"started": [i.id for i in started], "total": total}

    def _spec(self, revision: str, deployment: str) -> LaunchSpec:
        release = self.release_of(revision)
        environ = {**self.environ(), "SHIPYARD_REVISION": revision, "SHIPYARD_RELEASE_DIR": str(release)}
        if self.journal.redactor:       # the agent masks these in the log and drops them from the app's env
            environ[REDACT_ENV] = json.dumps(self.journal.redactor.values())
        return LaunchSpec(service=self.s.service, env=self.s.env, revision=revision, deployment=deployment,
                          cwd=release, argv=self.s.launch_argv(release),
                          environ=environ, stop_timeout=self.s.stop_timeout)

    async def _route(self, step: Route) -> dict[str, Any]:
        news = (await self.new_instances())[: step.new]
        olds = (await self.old_instances())[: step.old]
        backends = weights(news, olds, step.new_percent)
        await self.set_backends(backends)
        return {"backends": {b.address: b.weight for b in backends}}

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        """Route, remembering which addresses left rotation so the next Drain waits for them."""
        now = {b.address for b in backends if b.weight > 0}
        gone = [a for a in self.ctx.routed if a not in now]
        self.ctx.to_drain = sorted(set(self.ctx.to_drain + gone) - now)
        self.ctx.routed = sorted(now)
        self.save_context()
        await self.router.set_backends(backends)
        self.journal.event("traffic.changed", ", ".join(f"{b.address}={b.weight}" for b in backends),
                           backends=[b.__dict__ for b in backends])

    async def _drain(self, timeout: float) -> dict[str, Any]:
        remaining = await asyncio.gather(*(self.router.drain(a, timeout, self.s.ws_drain_timeout)
                                           for a in self.ctx.to_drain))
        left = dict(zip(self.ctx.to_drain, remaining, strict=True))
        self.ctx.to_drain = []
        self.save_context()
        if any(left.values()):
            self.journal.event("drain.incomplete", f"connections left open: {sum(left.values())}", left=left)
        return {"drained": left}

    async def _retire(self, keep: int) -> dict[str, Any]:
        olds = await self.old_instances()
        retire = [i for i in olds[keep:] if i.address not in self.ctx.routed]
        if self.s.keep_previous > 0:
            await self.target.keep_warm(retire, time.time() + self.s.keep_previous)
        else:
            await self.target.stop(retire, self.s.stop_timeout)
        return {"retired": [i.id for i in retire], "warm_for": self.s.keep_previous}

    async def _analyze(self, seconds: float) -> dict[str, Any]:
        """Bake: health of the routed new instances, plus the service's alarms and the canary judge."""
        news = [i for i in await self.new_instances() if i.address in self.ctx.routed]
        if self.analysis is None:
            provider = self.metrics or RouterProvider(self.router.stats)
            self.analysis = Analysis.build(self.s, self.revision, self.journal, provider, self._routed_baseline)
        async with HealthMonitor(self.s.health, [i.address for i in news]) as monitor:
            detail = await self.analysis.bake(seconds, monitor.unhealthy)
        return {"analyzed_seconds": seconds, "instances": [i.address for i in news], **detail}

    async def _routed_baseline(self) -> str | None:
        """The old revision while some of its instances still get traffic (what a canary is judged against)."""
        old = {i.address for i in await self.old_instances()}
        return self.ctx.old_revision if old & set(self.ctx.routed) else None

    # ---- rollback --------------------------------------------------------------------------------

    async def rollback(self, reason: str, *, resume: bool = False) -> DeployState:
        """Put traffic back on the old revision, stop the new instances; return the final state.

        Every rollback step is idempotent, so a rollback interrupted by a crash is redone from the start
        (`resume`), without entering rolling_back a second time.
        """
        if not resume:
            self.journal.transition(DeployState.ROLLING_BACK, reason)
        self.journal.event("rollback.started", reason, reason=reason)
        if "on_failure" in self.s.hooks:
            await self._safe_hook("on_failure", phase_idx=0)
        idx = 1
        olds: list[Instance] = []
        if self.ctx.old and self.ctx.old_revision:
            olds = await self._rb_step(idx, "ensure old instances run", self._ensure_old())
            idx += 1
        news = await self.new_instances()
        backends = weights([], olds, None)
        await self._rb_step(idx, "route all traffic to the old revision", self.set_backends(backends))
        idx += 1
        await self._rb_step(idx, "drain new instances", self._drain(self.s.drain_timeout))
        idx += 1
        await self._rb_step(idx, "stop new instances", self.target.stop(news, self.s.stop_timeout))
        idx += 1
        if "cleanup" in self.s.hooks:
            await self._safe_hook("cleanup", phase_idx=idx)
        final = DeployState.ROLLED_BACK if olds else DeployState.FAILED
        why = reason if olds else f"{reason} (no previous revision to roll back to)"
        self.journal.transition(final, why, finished_at=_now())
        self.journal.event("rollback.completed", why, state=str(final),
                           serving=self.ctx.old_revision if olds else None)
        return final

    async def _rb_step(self, idx: int, description: str, work: Any) -> Any:
        step = _Described(description)
        self.journal.step_started("rollback", idx, step)
        try:
            result = await work
        except (ShipyardError, OSError) as raised:
            exc = _one_line(raised)
            self.journal.step_finished("rollback", idx, StepState.FAILED, error=str(exc))
            if exc is raised:
                raise
            raise exc from raised
        self.journal.step_finished("rollback", idx, StepState.SUCCEEDED)
        return result

    async def _safe_hook(self, name: str, phase_idx: int) -> None:
        """on_failure/cleanup hooks: their output is kept, but their failure never stops a rollback."""
        step = RunHook(name)
        self.journal.step_started("rollback", phase_idx, step)
        try:
            detail = await self._hook(name, self.s.hooks[name],
                                      release_dir=self.release_dir if self.release_dir.exists() else None)
            self.journal.step_finished("rollback", phase_idx, StepState.SUCCEEDED, output=detail.get("output"))
        except (ShipyardError, OSError) as raised:
            exc = _one_line(raised)
            self.journal.step_finished("rollback", phase_idx, StepState.FAILED, error=str(exc),
                                       output=getattr(exc, "output", None))

    async def _ensure_old(self) -> list[Instance]:
        """The old set, running and out of expiry; instances lost meanwhile are started again."""
        assert self.ctx.old_revision is not None
        olds = [i for i in await self.old_instances() if i.state in ("running", "starting", "backoff")]
        await self.target.keep_warm(olds, None)
        missing = len(self.ctx.old) - len(olds)
        if missing > 0:
            await self.prepare(self.ctx.old_revision)      # a no-op while its release is still on disk
            fresh = await self.target.start(self._spec(self.ctx.old_revision, self.id + "-rollback"), missing)
            await self._wait_healthy([i.address for i in fresh])
            self.ctx.old = [i.id for i in olds + fresh]
            self.save_context()
            olds += fresh
        return olds


@dataclass(frozen=True)
class _Described(Step):
    text: str = ""

    def describe(self) -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "rollback", "text": self.text}


class _EventProber(Prober):
    """A Prober that records the first failed probe of each instance (when trouble was first seen)."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal
        self.failed: set[str] = set()

    async def probe(self, check: Any, address: str) -> ProbeResult:
        result = await super().probe(check, address)
        if not result.ok and address not in self.failed:
            self.failed.add(address)
            self.journal.event("health.probe_failed", f"{address}: {result.detail}", address=address,
                               detail=result.detail)
        return result


def _one_line(exc: Exception) -> Exception:
    return OSFailure.of(exc) if isinstance(exc, OSError) else exc


def _failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _now() -> Any:
    from datetime import UTC, datetime
    return datetime.now(UTC)
