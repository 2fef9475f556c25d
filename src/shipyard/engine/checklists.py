"""Running and confirming a deployment's checklist (config.checklists; the rules in domain.checklists).

When a deploy is recorded its environment's items are snapshot into the store with it. Automated pre items
run then, before anyone is asked anything and before the lease: one failing ends the deployment `failed`
before its first step, nothing started. Manual pre items are part of the deployment's gate
(engine.approvals): it waits in awaiting_approval, holding no lease, until each is confirmed, with the
approval gate's holder, heartbeat, takeover and timeout, so a crash or a restarted daemon loses no
confirmation. Automated post items are the plan's last step (domain.plan.PostChecklist): the deployment
stays in progress while they run (a metric item watches its alarm for its whole duration), and one with
`on_fail: rollback` failing fails that step, so the run rolls back the normal way; `on_fail: notify` only
records and emits `checklist.item.failed`. Manual post items may be confirmed once the deploy succeeded.

Layering: this module knows the store, a journal and a metric provider, never the Run (engine.run
imports it for the step, engine.deployer for the pre items).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import httpx

from shipyard.config.alerting import Alarm
from shipyard.domain.checklists import (
    CONFIRMED,
    FAILED,
    MANUAL,
    PASSED,
    POST,
    PRE,
    Item,
    clip,
)
from shipyard.domain.deployment import DeployState
from shipyard.engine.commands import run_argv
from shipyard.engine.journal import Journal
from shipyard.errors import ChecklistFailed, ChecklistRefused, MonitoringError, NotFoundError
from shipyard.monitoring.alarms import AlarmState
from shipyard.monitoring.base import MetricProvider
from shipyard.monitoring.watch import AlarmWatch
from shipyard.notify.outbox import record_event
from shipyard.secrets.scrub import scrubbed
from shipyard.store import Store
from shipyard.store import checklists as cq
from shipyard.store import leases as lq
from shipyard.store.models import Deployment
from shipyard.store.sql import utcnow

COMMENT_MAX = 1000
Outcome = tuple[bool, str, float]      # passed, one line (or output tail) of detail, seconds taken


# ---- running automated items ---------------------------------------------------------------------

async def check(item: Item, *, cwd: Path, environ: dict[str, str], provider: MetricProvider | None,
                labels: dict[str, str]) -> Outcome:
    """Run one automated item; never raises for the check's own failure (that is the outcome)."""
    start = time.monotonic()
    if item.kind == "command":
        argv = [str(a) for a in item.spec["command"]]
        try:
            res = await run_argv(argv, cwd=cwd, env=environ, timeout=float(item.spec["timeout"]))
        except OSError as exc:
            return False, f"{argv[0]}: {exc.strerror or exc}", time.monotonic() - start
        if res.ok:
            return True, clip(res.output.strip()) or "exit 0", res.seconds
        why = f"timed out after {float(item.spec['timeout']):g}s" if res.timed_out else f"exit {res.returncode}"
        return False, f"{why}: {res.output.strip()}", res.seconds
    if item.kind == "http":
        return await _http(item.spec["http"], start)
    if item.kind == "metric":
        return await _metric(item.spec["metric"], provider, labels, start)
    raise ValueError(f"not an automated item kind: {item.kind}")


async def _http(spec: dict[str, Any], start: float) -> Outcome:
    url, want = str(spec["url"]), int(spec["expect_status"])
    try:
        async with httpx.AsyncClient(timeout=float(spec["timeout"]), follow_redirects=False) as client:
            resp = await client.get(url)
    except httpx.HTTPError as exc:
        return False, f"GET {url}: {type(exc).__name__}: {exc or 'no answer'}", time.monotonic() - start
    said = f"GET {url} -> {resp.status_code}"
    if resp.status_code == want:
        return True, said, time.monotonic() - start
    return False, f"{said} (expected {want}): {resp.text[:300]}", time.monotonic() - start


async def _metric(spec: dict[str, Any], provider: MetricProvider | None, labels: dict[str, str],
                  start: float) -> Outcome:
    """Pass when the alarm never fires during `for` and ends OK: no data is no pass (an alarm with
    `treat_missing_data: notBreaching` says OK without data, if that is what you mean)."""
    if provider is None:
        return False, "no metric source to read the alarm from", 0.0
    name, alarm = str(spec["alarm_name"]), Alarm.model_validate(spec["alarm"])
    watch = AlarmWatch({name: alarm}, provider, labels=labels)
    deadline = start + float(spec["for"])
    while True:
        collect = getattr(provider, "collect", None)
        if collect is not None:
            with contextlib.suppress(MonitoringError):     # an unreachable source: the tick says so
                await collect()
        await watch.tick()
        if watch.firing():
            return False, watch.reason(name), time.monotonic() - start
        now = time.monotonic()
        if now >= deadline:
            break
        await asyncio.sleep(min(watch.interval, deadline - now))
    st = watch.status[name]
    took = time.monotonic() - start
    if st.error is not None:
        return False, f"alarm {name} could not be read: {st.error}", took
    if st.state is not AlarmState.OK:
        why = st.last.reason if st.last else "no data"
        return False, f"alarm {name} ended {st.state} after {float(spec['for']):g}s ({why})", took
    return True, f"alarm {name} stayed OK for {float(spec['for']):g}s ({alarm.metric} {alarm.statistic} " \
                 f"{alarm.comparison} {alarm.threshold:g} never held)", took


def _environ(journal: Journal, revision: str) -> dict[str, str]:
    return {**scrubbed(), "SHIPYARD_SERVICE": journal.service, "SHIPYARD_ENV": journal.env,
            "SHIPYARD_DEPLOYMENT": journal.deployment_id, "SHIPYARD_REVISION": revision}


async def run_items(store: Store, journal: Journal, phase: str, *, cwd: Path, revision: str,
                    provider: MetricProvider | None, labels: dict[str, str]) -> list[str]:
    """Run this deployment's automated items of `phase` at once, recording each as it ends (with its
    `checklist.item.*` event); the one-line reasons of those that fail and block (every pre item, post
    items with on_fail: rollback). The first blocking failure stops the rest (left pending: skipped)."""
    with store.session(readonly=True) as ses:
        items = [cq.as_item(r) for r in cq.list_items(ses, journal.deployment_id, phase)
                 if r.kind != MANUAL and r.status == "pending"]
    if not items:
        return []
    environ = _environ(journal, revision)
    blocking: list[str] = []

    async def one(item: Item) -> None:
        ok, detail, seconds = await check(item, cwd=cwd, environ=environ, provider=provider, labels=labels)
        detail = journal.redact(detail) if detail else detail
        with store.session() as ses:
            recorded = cq.record(ses, journal.deployment_id, item.name, status=PASSED if ok else FAILED,
                                 by="shipyard", detail=detail, seconds=round(seconds, 3))
        if not recorded:
            return
        line = (detail or "").strip().splitlines()[-1:] or [""]
        data = {"phase": phase, "item": item.name, "item_kind": item.kind, "on_fail": item.on_fail,
                "seconds": round(seconds, 3), "detail": clip(detail, 500)}
        if ok:
            journal.event("checklist.item.passed", f"{phase} {item.name} passed: {line[0][:200]}", **data)
            return
        journal.event("checklist.item.failed", f"{phase} {item.name} failed ({item.on_fail}): {line[0][:300]}",
                      **data)
        if item.on_fail in ("block", "rollback"):
            blocking.append(f"checklist {phase} item {item.name} failed: {line[0][:300]}")
            raise ChecklistFailed(blocking[-1])

    tasks = [asyncio.create_task(one(i)) for i in items]
    try:
        for done in asyncio.as_completed(tasks):
            try:
                await done
            except ChecklistFailed:
                break
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return blocking


async def run_pre(store: Store, journal: Journal, *, cwd: Path, revision: str,
                  provider: MetricProvider | None) -> str | None:
    """The automated pre items, before the gate and the lease; the reason the deploy stops, or None."""
    failed = await run_items(store, journal, PRE, cwd=cwd, revision=revision, provider=provider, labels={})
    return "; ".join(failed) or None


async def run_post(store: Store, journal: Journal, *, cwd: Path, revision: str,
                   provider: MetricProvider | None) -> dict[str, Any]:
    """The post-check step: ChecklistFailed (the run rolls back) when an on_fail: rollback item fails."""
    failed = await run_items(store, journal, POST, cwd=cwd, revision=revision, provider=provider,
                             labels={"revision": revision})
    with store.session(readonly=True) as ses:
        statuses = {r.name: r.status for r in cq.list_items(ses, journal.deployment_id, POST) if r.kind != MANUAL}
    if failed:
        raise ChecklistFailed("; ".join(failed))
    return {"checklist": statuses}


# ---- confirming manual items ------------------------------------------------------------------------

def confirm(store: Store, dep_id: str, name: str, *, by: str, via: str = "cli", comment: str = "",
            notifications: Any = None) -> dict[str, Any]:
    """Record `by`'s confirmation of a manual item, or ChecklistRefused saying why it cannot count: a pre
    item only while the deployment waits before its first step, a post item once it succeeded."""
    comment = comment.strip()[:COMMENT_MAX]
    with store.session() as ses:
        row = ses.get(Deployment, dep_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise NotFoundError(f"no deployment {dep_id!r}")
        item = cq.get_item(ses, dep_id, name)
        if item is None:
            names = [r.name for r in cq.list_items(ses, dep_id) if r.kind == MANUAL]
            raise ChecklistRefused(f"{dep_id} has no checklist item {name!r} (to confirm: "
                                   f"{', '.join(names) or 'none'})")
        if item.kind != MANUAL:
            raise ChecklistRefused(f"{name} is a {item.kind} check: shipyard runs it, nobody confirms it")
        if item.status != "pending":
            raise ChecklistRefused(f"{name} was {item.status} by {item.by} at {item.at:%Y-%m-%d %H:%M:%S} UTC "
                                   "already: an item is confirmed once")
        state = DeployState(row.state)
        lease = lq.get_lease(ses, row.service, row.env)
        if item.phase == PRE and (state is not DeployState.AWAITING_APPROVAL
                                  or (lease is not None and lease.deployment_id == dep_id)):
            now_is = "starting" if state is DeployState.AWAITING_APPROVAL else str(state).replace("_", " ")
            raise ChecklistRefused(f"{dep_id} is {now_is}: its pre items can no longer be confirmed")
        if item.phase == POST and state is not DeployState.SUCCEEDED:
            raise ChecklistRefused(f"{dep_id} is {str(state).replace('_', ' ')}: post items are confirmed "
                                   "once it succeeded")
        now = utcnow()
        if not cq.record(ses, dep_id, name, status=CONFIRMED, by=by, detail=comment or None, now=now):
            raise ChecklistRefused(f"{name} was confirmed by someone else just now: an item is confirmed once")
        left = cq.pending_manual_pre(ses, dep_id) if item.phase == PRE else []
        statement = str(dict(item.spec).get("confirm", name))
        record_event(ses, notifications, "checklist.item.confirmed", service=row.service, env=row.env,
                     message=f"{item.phase} {name} confirmed by {by}: {statement}"
                             + (f" ({comment})" if comment else ""),
                     deployment_id=dep_id, data={"phase": item.phase, "item": name, "item_kind": MANUAL, "by": by,
                                                 "via": via, "comment": comment, "left": left})
    return {"id": dep_id, "item": name, "phase": item.phase, "by": by, "at": now, "left": left,
            "state": str(state)}
