"""Execute one deployment's plan against a target and a router (engine.rollback undoes it when it fails).

Everything the run knows about instances is re-read from the target and the router (the agent is the
source of truth), plus a small persisted context: which instances were serving before (`old`) and which
this run started or adopted (`new`). That makes every step idempotent, so a run resumed or rolled back by
`shipyard recover` after its owner died acts on what really exists, not on what a dead process believed.

Layering inside the engine: deployer -> (release, rollback) -> run -> (activation, analysis, startup,
journal, settings); none of these imports one above it. A release target (targets.base.ReleaseTarget)
stands where a Target does: every instance call is behind an isinstance check (`_all`, `activate`).
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

from shipyard.domain.deployment import StepState
from shipyard.domain.plan import (
    Activate,
    Analyze,
    Drain,
    Migrate,
    Pause,
    Plan,
    PostChecklist,
    Prepare,
    RetireOld,
    Route,
    RunHook,
    Scan,
    Stage,
    StartNew,
    Step,
    StopOld,
    WaitHealthy,
)
from shipyard.domain.types import Instance
from shipyard.ecr.tags import tag_build_image
from shipyard.engine import checklists
from shipyard.engine.activation import StatusMonitor, wait_status
from shipyard.engine.analysis import Analysis
from shipyard.engine.commands import CommandResult, run_command
from shipyard.engine.journal import Journal
from shipyard.engine.runstate import RunContext, weights
from shipyard.engine.settings import HookSpec, ServiceSettings
from shipyard.engine.stages import checkout, drop_checkout, run_scan, run_stage
from shipyard.engine.startup import StartWatch, reported
from shipyard.errors import HookError, OSFailure, ReleaseError, ShipyardError
from shipyard.health.checker import HealthMonitor
from shipyard.monitoring.providers.router import RouterProvider
from shipyard.releases.remote import TRANSFER_ALLOWANCE
from shipyard.releases.store import ReleaseStore
from shipyard.routers.base import Router, WeightedBackend
from shipyard.secrets.redact import REDACT_ENV
from shipyard.secrets.scrub import scrubbed
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.targets.base import (
    LaunchSpec,
    PlacingTarget,
    ProgressTarget,
    ReleaseSpec,
    ReleaseTarget,
    ShippingTarget,
    Target,
)

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
        self.startup = StartWatch(journal, target, settings.health, settings.health_wait)
        if isinstance(target, ProgressTarget):
            target.on_progress = lambda line: journal.event("instance.progress", line)
        self._labels: dict[str, str] = {}

    # ---- instances -------------------------------------------------------------------------------

    async def _all(self) -> list[Instance]:
        if isinstance(self.target, ReleaseTarget):
            return []           # a release target has no instances (it stands where a Target does)
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

    def label(self, revision: str | None) -> str:
        """A revision as people read it (see revision_label), looked up once per run."""
        key = revision or ""
        if key not in self._labels:
            self._labels[key] = revision_label(self.journal.store, self.s.service, self.s.env, revision)
        return self._labels[key]

    def names(self) -> tuple[str, str]:
        """How this run's two sets are called: by revision, and when both run the same revision (a
        redeploy with a changed config) by whose they are."""
        new, old = self.label(self.revision), self.label(self.ctx.old_revision)
        if new == old:
            return f"this deployment's {new}", f"the previous {old}"
        return new, old

    def describe(self, step: Step) -> str:
        new, old = self.names()
        if isinstance(step, WaitHealthy) and isinstance(self.target, ReleaseTarget):
            return f"check that {new} is healthy (the target's status)"     # no instances to wait for
        return step.describe(new=new, old=old)

    def save_context(self) -> None:
        self.journal.update(context=self.ctx.to_dict())

    @cached_property
    def release_dir(self) -> Path:
        """This run's release directory (computed on first use, inside a step: it reads the release key)."""
        return self.release_of(self.revision)

    def build_environ(self, revision: str) -> dict[str, str]:
        """What a build of `revision` sees, and so what its release is keyed by (releases.store): nothing
        that changes from one deployment to the next, or every deploy would build again."""
        base = scrubbed()
        return {**base, **self.s.environ, "SHIPYARD_SERVICE": self.s.service, "SHIPYARD_ENV": self.s.env,
                "SHIPYARD_REVISION": revision}

    def _build_env(self, revision: str) -> dict[str, str]:
        """What the build of `revision` gets. On a build host that is its own login's PATH, HOME, LANG...
        with the service's variables on top, not the controller's (which would not fit another machine)."""
        if self.s.build_host is None:
            return self.build_environ(revision)
        return {**self.s.environ, "SHIPYARD_SERVICE": self.s.service, "SHIPYARD_ENV": self.s.env,
                "SHIPYARD_REVISION": revision}

    def release_of(self, revision: str) -> Path:
        """The release directory `revision` is (or will be) built in with this run's inputs."""
        return self.releases.path(self.s.service, revision, build=self.s.build, env=self._build_env(revision),
                                  build_host=self.s.build_host)

    async def prepare(self, revision: str) -> CommandResult | None:
        """Export and build `revision` unless its release (same inputs) is built already."""
        _, result = await self.releases.prepare(self.s.source, self.s.service, revision, build=self.s.build,
                                                env=self._build_env(revision), timeout=self.s.build_timeout,
                                                redact=self.journal.redact, build_host=self.s.build_host)
        return result

    def environ(self) -> dict[str, str]:
        """What hooks and instances see: the build's variables plus this deployment's id and release dir."""
        return {**self.build_environ(self.revision), "SHIPYARD_DEPLOYMENT": self.id,
                "SHIPYARD_RELEASE_DIR": str(self.release_dir)}

    # ---- the forward run -------------------------------------------------------------------------

    async def execute(self, plan: Plan, start_at: int = 0) -> None:
        """Run steps from `start_at`; raises StepFailed (after recording it) on the first failure."""
        try:
            await self._execute(plan, start_at)
        finally:
            drop_checkout(self.releases.root, self.s.service, self.s.env, self.id)

    async def _execute(self, plan: Plan, start_at: int) -> None:
        for idx in range(start_at, len(plan.steps)):
            if self.stopped:        # cancelled: never start another step, even if a cancel was swallowed
                raise asyncio.CancelledError
            step = plan.steps[idx]
            self.journal.step_started("deploy", idx, step, self.describe(step))
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that races a result.
                async with asyncio.timeout(self._timeout(step)):
                    detail = await self._do(step)
            except TimeoutError:
                msg = f"step {idx + 1} ({self.describe(step)}) timed out after {self._timeout(step):g}s"
                self.journal.step_finished("deploy", idx, StepState.FAILED, error=msg)
                raise StepFailed(msg) from None
            except (ShipyardError, OSError) as raised:
                # An OSError (a path too long, a disk full) fails the step like any other error, so the run
                # rolls back instead of dying with a traceback and staying in progress.
                exc = one_line(raised)
                output = getattr(exc, "output", None)
                self.journal.step_finished("deploy", idx, StepState.FAILED, error=str(exc), output=output,
                                           detail=getattr(exc, "detail", None))
                raise StepFailed(f"step {idx + 1} ({self.describe(step)}): {exc}") from raised
            output = detail.pop("output", None) if detail else None
            self.journal.step_finished("deploy", idx, StepState.SUCCEEDED, output=output, detail=detail)
            _failpoint(f"after-step:{idx}", self.s.service)

    def _timeout(self, step: Step) -> float:
        if isinstance(step, RunHook):
            return self.s.hooks[step.hook].timeout + 5
        if isinstance(step, Migrate) and self.s.migrate:
            return self.s.migrate.timeout + 5
        if isinstance(step, Stage):         # + making the checkout it runs in
            return self.s.stages[step.name].timeout + 60
        if isinstance(step, Scan):
            return float(getattr(self.s.scan, "timeout", 600.0)) + 60
        if isinstance(step, Prepare):
            return self.s.build_timeout + 60 + (TRANSFER_ALLOWANCE if self.s.build_host else 0)
        if isinstance(step, (Pause, Analyze)):
            return step.seconds + self.s.step_timeout
        if isinstance(step, PostChecklist):
            return self.s.post_watch + self.s.step_timeout
        if isinstance(step, WaitHealthy):
            return max(self.s.step_timeout, self.s.health_wait + 5)
        if isinstance(step, Activate):
            # The target bounds its own long parts (a deploy command, the invalidation): never cut them short.
            target = self.s.target
            return self.s.step_timeout + float(getattr(target, "timeout", 0)) + \
                float(getattr(target, "invalidation_timeout", 0))
        return self.s.step_timeout

    async def _do(self, step: Step) -> dict[str, Any]:
        if isinstance(step, Prepare):
            result = await self.prepare(self.revision)
            if self.s.publish_dir and not (self.release_dir / self.s.publish_dir).is_dir():
                raise ReleaseError(f"publish_dir {self.s.publish_dir!r} is not a directory in the release of "
                                   f"{self.revision[:8]} after the build (does `build` write it?)")
            detail: dict[str, Any] = {"output": result.output if result else "release already built",
                                      "built": bool(result)}
            if self.s.image is not None:
                detail["image"] = await self._tag_image()
            if isinstance(self.target, ShippingTarget):
                detail["shipped"] = await self.ship(self.release_dir)
            return detail
        if isinstance(step, RunHook):
            return await self._hook(step.hook, self.s.hooks[step.hook])
        if isinstance(step, Migrate):
            assert self.s.migrate is not None
            return await self._hook("migrate", self.s.migrate)
        if isinstance(step, Activate):
            return await self.activate(step.restore)
        if isinstance(step, (Stage, Scan)):
            return await self._stage(step)
        if isinstance(step, StartNew):
            return await self._start_new(step.total)
        if isinstance(step, WaitHealthy) and isinstance(self.target, ReleaseTarget):
            return await wait_status(self.target, self.s.health, self.journal, self.s.health_wait)
        if isinstance(step, WaitHealthy):
            return await self.startup.wait(await self.new_instances())
        if isinstance(step, Route):
            return await self._route(step)
        if isinstance(step, Drain):
            return await self.drain(step.timeout)
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
        if isinstance(step, PostChecklist):
            return await checklists.run_post(self.journal.store, self.journal, cwd=self._checklist_dir(),
                                             revision=self.revision,
                                             provider=self.metrics or RouterProvider(self.router.stats))
        raise StepFailed(f"unknown step kind {step.kind}")

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

    async def _stage(self, step: Stage | Scan) -> dict[str, Any]:
        """A pipeline stage, in the built release or (before the build) a fresh checkout of the revision."""
        cwd = self.release_dir if step.in_release else await checkout(
            self.releases.root, self.s.source, self.revision, self.s.service, self.s.env, self.id)
        env = {**self.environ(), "SHIPYARD_STAGE_DIR": str(cwd)}
        if isinstance(step, Scan):
            detail = await run_scan(self.s.scan, cwd=cwd, env=env, revision=self.revision)
            self.journal.event("scan.finished", f"{detail['tool']}: {detail['summary']}", tool=detail["tool"],
                               summary=detail["summary"], seconds=detail["seconds"])
            return detail
        detail = await run_stage(step.name, self.s.stages[step.name], cwd=cwd, env=env)
        self.journal.event("stage.finished", f"{step.name}: exit 0 in {detail['seconds']:g}s", stage=step.name,
                           seconds=detail["seconds"])
        return detail

    async def _tag_image(self) -> dict[str, Any]:
        """After the build pushed <repository>:<sha>, the image's other tags (registry-side, idempotent)."""
        record = await tag_build_image(self.s.image, self.s.source, self.revision)
        applied = ", ".join(f"{t['tag'][:12]} {t['action']}" for t in record["tags"][1:]) or "no other tags"
        self.journal.event("image.tagged", f"{record['repository']}@{record['digest'][:19]}: {applied}",
                           repository=record["repository"], digest=record["digest"],
                           tags=[t["tag"] for t in record["tags"]], notes=record["notes"])
        return record

    async def ship(self, release: Path) -> dict[str, Any]:
        """Ship a built release to the target, keeping the releases its instances run."""
        assert isinstance(self.target, ShippingTarget)
        in_use = {Path(i.labels.get("release", "")).name for i in await self._all()} - {""}
        return await self.target.ship(release, self.s.keep_releases, in_use)

    async def _start_new(self, total: int) -> dict[str, Any]:
        if isinstance(self.target, PlacingTarget):
            total = min(total, self.target.desired)     # a host lost mid-run (within minimum_healthy_hosts)
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
        olds = await self.old_instances()
        olds = self.target.keep_serving(olds, step.old) if isinstance(self.target, PlacingTarget) \
            else olds[: step.old]
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

    async def drain(self, timeout: float) -> dict[str, Any]:
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
        # Those the last Route took out, whichever they are (a placing target picks them by host).
        retire = [i for i in olds if i.address not in self.ctx.routed][: max(0, len(olds) - keep)]
        if self.s.keep_previous > 0 and "keep_warm" in self.target.capabilities:
            # Warm through the post-deploy checklist too: a rollback it causes is then a traffic flip.
            await self.target.keep_warm(retire, time.time() + self.s.keep_previous + self.s.post_watch)
        else:
            await self.target.stop(retire, self.s.stop_timeout)
        return {"retired": [i.id for i in retire], "warm_for": self.s.keep_previous}

    # ---- release targets (engine.activation; plans from strategies.release) ----------------------------
    def release_spec(self, revision: str) -> ReleaseSpec:
        """`revision`'s release as a release target activates it, its progress recorded as events."""
        release = self.release_of(revision)

        def progress(message: str, data: dict[str, Any]) -> None:
            self.journal.event("release.progress", message, revision=revision, **data)
        return ReleaseSpec(self.s.service, self.s.env, revision, self.id, release,
                           {**self.environ(), "SHIPYARD_REVISION": revision, "SHIPYARD_RELEASE_DIR": str(release)},
                           progress)

    async def activate(self, restore: bool = False, *, revision: str | None = None,
                       record: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make a release live: this run's (activate), or the one of `record` / ctx.restore (rollback)."""
        assert isinstance(self.target, ReleaseTarget)
        revision = revision or self.revision
        spec = self.release_spec(revision)
        back = record or (self.ctx.restore if restore else None)
        made = await (self.target.rollback(back, spec) if back is not None else self.target.activate(spec))
        output = made.pop("output", None)       # kept in the step's (masked) output, not in the context
        self.ctx.activated = made
        self.save_context()
        self.journal.event("release.activated", f"{self.label(revision)} is live", revision=revision,
                           record=made)
        return {**made, "output": output} if output is not None else made

    async def _analyze(self, seconds: float) -> dict[str, Any]:
        """Bake: health of the routed new instances, plus the service's alarms and the canary judge."""
        if self.analysis is None:
            provider = self.metrics or RouterProvider(self.router.stats)
            self.analysis = Analysis.build(self.s, self.revision, self.journal, provider, self._routed_baseline)
        if isinstance(self.target, ReleaseTarget):
            async with StatusMonitor(self.target, self.s.health, self.journal) as status:
                detail = await self.analysis.bake(seconds, status.unhealthy)
            return {"analyzed_seconds": seconds, **detail}
        news = [i for i in await self.new_instances() if i.address in self.ctx.routed]
        async with HealthMonitor(self.s.health, [i.address for i in news], prober=reported(self.target)) as monitor:
            detail = await self.analysis.bake(seconds, monitor.unhealthy)
        return {"analyzed_seconds": seconds, "instances": [i.address for i in news], **detail}

    def _checklist_dir(self) -> Path:
        where = self.s.checklist_dir or self.releases.root
        where.mkdir(parents=True, exist_ok=True)
        return where

    async def _routed_baseline(self) -> str | None:
        """The old revision while some of its instances still get traffic (what a canary is judged against)."""
        old = {i.address for i in await self.old_instances()}
        return self.ctx.old_revision if old & set(self.ctx.routed) else None

    async def safe_hook(self, name: str, phase: str, idx: int) -> None:
        """on_failure and cleanup: their output is kept, but their failure never stops what runs them (a
        rollback, or the end of a run). `phase` says which: a successful deploy's cleanup is "finish", not
        a rollback step."""
        step = RunHook(name)
        self.journal.step_started(phase, idx, step)
        try:
            detail = await self._hook(name, self.s.hooks[name],
                                      release_dir=self.release_dir if self.release_dir.exists() else None)
            self.journal.step_finished(phase, idx, StepState.SUCCEEDED, output=detail.get("output"))
        except (ShipyardError, OSError) as raised:
            exc = one_line(raised)
            self.journal.step_finished(phase, idx, StepState.FAILED, error=str(exc),
                                       output=getattr(exc, "output", None))

    async def start_healthy(self, revision: str, deployment: str, count: int) -> list[Instance]:
        """Start `count` instances of `revision` and wait until they are healthy (the rollback's way of
        bringing back old instances that were lost)."""
        fresh = await self.target.start(self._spec(revision, deployment), count)
        await self.startup.wait(fresh)
        return fresh


@dataclass(frozen=True)
class Described(Step):
    """A step of a rollback, which is not planned: only its text is recorded."""

    text: str = ""

    def describe(self, new: str = "new", old: str = "old") -> str:
        return self.text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "rollback", "text": self.text}


def revision_label(store: Store, service: str, env: str, revision: str | None) -> str:
    """A revision as people read it: its short sha and the ref it was deployed from, `1a2b3c4d (v1.2)`."""
    if not revision:
        return "the previous revision"
    with store.session(readonly=True) as ses:
        ref = dq.ref_of(ses, service, env, revision)
    return f"{revision[:8]} ({ref})" if ref and not revision.startswith(ref) else revision[:8]


def one_line(exc: Exception) -> Exception:
    return OSFailure.of(exc) if isinstance(exc, OSError) else exc


def _failpoint(name: str, service: str) -> None:
    # "SERVICE:after-step:N" aims at one service: a release group runs several deployments in one process.
    if os.environ.get(FAILPOINT_ENV) in (name, f"{service}:{name}"):
        os.kill(os.getpid(), signal.SIGKILL)
