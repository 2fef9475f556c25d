"""What each page shows, gathered from the store and the runner: indexed queries only, never a scan of the
history (the overview costs the same over a thousand or a million deployments).

- the overview: the runner's status rows (what GET /api/v1/status answers), plus per cell the serving
  deployment's commit subject and author (from its `deploy.queued` event, by the deployment_id index), the
  active freezes, the running deployments' steps and the ten newest deployments (the created_at index);
- a deployment: its row, steps (durations, output, each analysis's alarms and canary samples) and events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shipyard.engine import approvals as gate
from shipyard.errors import NotFoundError
from shipyard.store import Store
from shipyard.store import approvals as aq
from shipyard.store import promotions as pq
from shipyard.store import steps as sq
from shipyard.store import tokens as tq
from shipyard.store.models import ApiToken, Deployment, Event, StepRecord

RECENT = 10


def allowed_envs(token: ApiToken, envs: list[str]) -> list[str]:
    bound = tq.envs_of(token)
    return [e for e in envs if bound is None or e in bound]


def commits_of(s: Session, ids: list[str]) -> dict[str, dict[str, str]]:
    """deployment id -> {subject, author} where its queued event recorded them (older runs did not)."""
    if not ids:
        return {}
    stmt = select(Event.deployment_id, Event.data).where(Event.deployment_id.in_(ids), Event.kind == "deploy.queued")
    out: dict[str, dict[str, str]] = {}
    for dep_id, data in s.execute(stmt):
        if dep_id and isinstance(data, dict):
            out[dep_id] = {k: str(data[k]) for k in ("subject", "author") if data.get(k)}
    return out


def duration(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else round((end - start).total_seconds(), 1)


def step_view(st: StepRecord) -> dict[str, Any]:
    detail = st.detail if isinstance(st.detail, dict) else {}
    alarms = detail.get("alarms") if isinstance(detail.get("alarms"), dict) else {}
    canary = detail.get("canary") if isinstance(detail.get("canary"), dict) else None
    return {"phase": st.phase, "idx": st.idx, "kind": st.kind, "description": st.description, "state": st.state,
            "started_at": st.started_at, "ended_at": st.ended_at, "seconds": duration(st.started_at, st.ended_at),
            "output": st.output, "error": st.error, "alarms": alarms, "canary": canary,
            "detail": {k: v for k, v in detail.items() if k not in ("alarms", "canary")}}


def running_steps(s: Session, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        stmt = (select(StepRecord).where(StepRecord.deployment_id.in_(ids))
                .order_by(StepRecord.deployment_id, StepRecord.phase.desc(), StepRecord.idx))
        for st in s.scalars(stmt):
            out[st.deployment_id].append(step_view(st))
    return out


def recent(s: Session, envs: list[str], limit: int = RECENT) -> list[Deployment]:
    stmt = select(Deployment).order_by(Deployment.created_at.desc(), Deployment.id.desc()).limit(limit)
    if envs:
        stmt = stmt.where(Deployment.env.in_(envs))
    return list(s.scalars(stmt))


def overview_extras(store: Store, rows: list[dict[str, Any]], envs: list[str]) -> dict[str, Any]:
    """What the overview adds to the status rows, in one short read session."""
    serving = [r["serving_deployment"]["id"] for r in rows if r.get("serving_deployment")]
    leased = [r["lease"]["deployment"] for r in rows if r.get("lease")]
    with store.session(readonly=True) as s:
        frozen = {e: f for e in envs if (f := pq.active_freeze(s, e)) is not None}
        frozen_view = {e: {"reason": f.reason, "by": f.frozen_by, "at": f.frozen_at} for e, f in frozen.items()}
        running = {d.id: d for d in s.scalars(select(Deployment).where(Deployment.id.in_(leased)))} if leased else {}
        return {"commits": commits_of(s, serving + leased), "frozen": frozen_view,
                "running": {i: {"row": running.get(i), "steps": st} for i, st in running_steps(s, leased).items()},
                "recent": recent(s, envs)}


def awaiting_approval(store: Store, envs: list[str], token: ApiToken) -> list[dict[str, Any]]:
    """Deployments awaiting approval in `envs`, oldest first: the row, its commit and the gate as
    engine.approvals.status tells it (what GET /api/v1/approvals answers), and whether this token may decide.
    The state index finds them: a handful of rows whatever the history's size."""
    if not envs:
        return []
    with store.session(readonly=True) as s:
        rows = [d for d, _ in aq.awaiting(s) if d.env in envs]
        commits = commits_of(s, [d.id for d in rows])
    return [a for d in rows if (a := approval_of(store, d, commits.get(d.id, {}), token)) is not None]


def approval_of(store: Store, d: Deployment, commit: dict[str, str], token: ApiToken) -> dict[str, Any] | None:
    """One deployment's approval card, or None when it no longer awaits approval (decided, pruned)."""
    try:
        found = gate.status(store, d.id)
    except NotFoundError:
        return None
    if found["gate"] is None or found["state"] != "awaiting_approval":
        return None
    return {"dep": d, "gate": found["gate"], "decisions": found["decisions"], "commit": commit,
            "can_decide": tq.allows(token, "approve", d.env)}


def grid(rows: list[dict[str, Any]], envs: list[str]) -> tuple[list[str], dict[tuple[str, str], dict[str, Any]]]:
    """Services (in the rows' order) and the cell of each (service, env)."""
    services = list(dict.fromkeys(r["service"] for r in rows))
    cells = {(r["service"], r["env"]): cell(r) for r in rows if r["env"] in envs}
    return services, cells


def cell(row: dict[str, Any]) -> dict[str, Any]:
    """One status row as the grid shows it: revisions with their traffic share, health counts."""
    split: dict[str, float] = {}
    for inst in row.get("instances", []):
        split[inst["revision"]] = split.get(inst["revision"], 0.0) + float(inst.get("traffic_percent", 0))
    for b in row.get("routed", []) or []:       # the agent down: the router's weights instead
        split[b["revision"]] = split.get(b["revision"], 0.0) + float(b.get("weight", 0))
    total = sum(split.values())
    if row.get("routed") and total:
        split = {k: round(100 * v / total, 1) for k, v in split.items()}
    healthy = sum(1 for i in row.get("instances", []) if i.get("health") == "healthy")
    revision = row.get("revision")
    return {**row, "split": sorted(((k, round(v, 1)) for k, v in split.items()), key=lambda kv: -kv[1]),
            "healthy": healthy,
            "revisions": revision if isinstance(revision, list) else ([revision] if revision else [])}


CHECK_PHASES = {"pre": "Before the deploy", "post": "After the deploy"}
CHECK_STATUSES = ("pending", "passed", "failed", "confirmed", "skipped")


def checklist_of(detail: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The `checklist` of the API's one-deployment answer (GET /api/v1/deployments/{id}), by phase, read
    defensively: a server without checklists has no such field (then {}), and an item missing a key or with
    a value of the wrong type is shown with what it has rather than breaking the page."""
    items = detail.get("checklist")
    if not isinstance(items, list):
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        if not isinstance(item, Mapping):
            continue
        phase = str(item.get("phase") or "pre")
        status = str(item.get("status") or "pending")
        text = {k: ("" if item.get(k) is None else str(item.get(k))) for k in ("name", "kind", "by", "detail",
                                                                            "on_fail")}
        at = item.get("at")
        out.setdefault(phase if phase in CHECK_PHASES else "other", []).append(
            {**text, "status": status if status in CHECK_STATUSES else "unknown", "raw_status": status,
             "at": at if isinstance(at, datetime) else _parse_at(at)})
    return {k: out[k] for k in (*CHECK_PHASES, "other") if k in out}


def _parse_at(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def deployment_page(s: Session, dep: Deployment) -> dict[str, Any]:
    steps = [step_view(st) for st in sq.list_steps(s, dep.id)]
    events = list(s.scalars(select(Event).where(Event.deployment_id == dep.id).order_by(Event.id)))
    return {"dep": dep, "steps": steps, "events": events, "seconds": duration(dep.started_at, dep.finished_at),
            "commit": commits_of(s, [dep.id]).get(dep.id, {}),
            "last_event": events[-1].id if events else 0}
