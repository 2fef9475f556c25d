"""Every kind of event shipyard records: its name, whether notification routes see it, its severity and
the keys of its data.

The one source of truth for event kinds: severities come from here (notify/message.py), the table of
kinds in docs/notifications.md is generated from here (`python -m shipyard.notify.kinds`), and a
meta-test checks that every kind the code emits is registered (and emitted the way `notified` says).
Kinds built from a state (`alarm.<state>`, `analysis.<verdict>`, `promotion.<state>`) are listed one by
one, since routes match names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True)
class EventKind:
    name: str
    summary: str
    severity: Severity = "info"     # what routes filter on and what colours a Slack message
    notified: bool = True           # passes notification routes (False: kept in history/audit only)
    data: tuple[str, ...] = ()      # keys of the event's data (besides what notify/ adds from the deployment)


_DEPLOY = (
    EventKind("deploy.queued", "A deploy (or rollback to a revision) was requested and recorded.",
              data=("revision", "ref", "actor", "subject", "author")),
    EventKind("deploy.triggered", "GitOps started this deploy: a poll or a push webhook saw the env's branch "
              "move.", notified=False, data=("source", "delivery", "repo", "branch", "sha", "pusher")),
    EventKind("deploy.waiting", "The deploy waits for the (service, env) lease held by another run.",
              data=("position", "holder")),
    EventKind("deploy.started", "The deploy holds the lease and starts its plan.",
              data=("strategy", "revision", "previous_revision", "steps")),
    EventKind("deploy.succeeded", "Every step passed: the new revision serves all traffic.", data=("revision",)),
    EventKind("deploy.failed", "A step failed; a rollback follows when anything had changed.", "critical",
              data=("reason",)),
    EventKind("deploy.refused", "Refused before it started (frozen env, missing secrets, unknown revision, lease "
              "held with --no-wait, address taken); nothing changed.", "warning",
              data=("actor", "reason", "missing")),
    EventKind("deploy.freeze_overridden", "A deploy or rollback into a frozen env went ahead with "
              "--override-freeze (who and why recorded).", "warning",
              data=("actor", "reason", "freeze", "frozen_by", "in_config")),
    EventKind("hosts.skipped", "Hosts unreachable before the deploy were left out, as minimum_healthy_hosts "
              "allows.", "warning", data=("skipped",)),
    EventKind("host.lost", "A host became unreachable mid-deploy: the deploy carries on without it within "
              "minimum_healthy_hosts, or rolls back.", "critical", data=("host", "reason", "carry_on")),
    EventKind("router.listening", "No listen address is configured: the router's address (picked on the first "
              "deploy, then kept).", data=("address",)),
    EventKind("deploy.cancelled", "A deploy waiting in the queue was cancelled (`shipyard cancel`, POST "
              ".../cancel): it ended without touching anything.", "warning", data=("actor", "reason")),
    EventKind("recover.started", "`shipyard recover` took over a run whose owner died.", "critical",
              data=("previous_owner", "actor")),
    EventKind("recover.cancelled", "`shipyard recover` closed a deploy whose owner died while it waited in "
              "the queue.", "warning", data=("previous_owner", "actor")),
)
_APPROVAL = (
    EventKind("approval.requested", "A deploy into a gated env waits for approval (holding no lease); messages "
              "carry signed approve/reject links with `approval_links`.", "warning",
              data=("required", "approvers", "wait", "expires_at", "requested_by", "self_approval", "revision",
                    "ref")),
    EventKind("approval.approved", "Someone approved a deployment awaiting approval (their count so far).",
              data=("actor", "decision", "comment", "via", "count", "required")),
    EventKind("approval.granted", "The last approval needed came: the wait timer runs, then the deploy.",
              data=("approvers", "wait", "ready_at")),
    EventKind("approval.rejected", "Someone rejected a deployment awaiting approval: it is cancelled.", "warning",
              data=("reason", "actor", "decision", "comment", "via")),
    EventKind("approval.expired", "Not approved within the gate's timeout: the deployment is cancelled.", "warning",
              data=("reason",)),
    EventKind("approval.superseded", "A newer request for the same service and env cancelled this one.",
              "warning", data=("reason", "by")),
    EventKind("approval.resumed", "The wait of a deployment whose waiting process died was taken over (the "
              "daemon's approvals work, `shipyard recover`).", "warning", data=("previous_owner", "actor")),
)
_ITEM_DATA = ("phase", "item", "item_kind", "on_fail", "seconds", "detail")
_CHECKLIST = (
    EventKind("checklist.requested", "A deploy waits for its manual pre-deploy checklist items to be confirmed "
              "(holding no lease): `shipyard checklist confirm ID NAME`.", "warning",
              data=("items", "expires_at", "requested_by", "revision")),
    EventKind("checklist.item.confirmed", "Someone confirmed a manual checklist item (who, through what, and "
              "the pre items still left).", data=("phase", "item", "item_kind", "by", "via", "comment", "left")),
    EventKind("checklist.item.passed", "An automated checklist item (command, http, metric) passed.",
              data=_ITEM_DATA),
    EventKind("checklist.item.failed", "An automated checklist item failed: a pre item stops the deploy before "
              "its first step, a post item rolls it back (on_fail: rollback) or only tells (on_fail: notify).",
              "critical", data=_ITEM_DATA),
)
_ROLLBACK = (
    EventKind("rollback.requested", "`shipyard rollback`: traffic flips back to the warm previous set.",
              "critical", data=("revision", "rollback_of")),
    EventKind("rollback.started", "A rollback began (after a failure, an alarm or on request).", "critical",
              data=("reason",)),
    EventKind("rollback.resumed", "A rollback whose owner died is resumed by `shipyard recover`.", "critical"),
    EventKind("rollback.completed", "The rollback ended: the previous revision serves (or nothing could).",
              "critical", data=("state", "serving")),
)
_STEPS = (
    EventKind("hook.finished", "A lifecycle hook ended.", data=("hook", "returncode", "seconds")),
    EventKind("stage.finished", "A command stage of the pipeline passed (a failing one fails the deploy).",
              data=("stage", "seconds")),
    EventKind("scan.finished", "The vulnerability scan passed its policy (a blocking one fails the deploy).",
              data=("tool", "summary", "seconds")),
    EventKind("instance.started", "An instance of the new revision was started.",
              data=("instance", "address", "revision")),
    EventKind("traffic.changed", "The router's weights were set.", data=("backends",)),
    EventKind("drain.incomplete", "Connections were still open when the drain budget ended.", "warning",
              data=("left",)),
    EventKind("health.changed", "An instance's health state changed while waiting for it.",
              data=("address", "state", "detail")),
    EventKind("health.probe_failed", "An instance's first failed health probe.", "warning",
              data=("address", "detail")),
    EventKind("image.tagged", "The build's image got its other tags registry-side (semver, latest), from the sha "
              "tag the build pushed.", data=("repository", "digest", "tags", "notes")),
    EventKind("instance.progress", "A target moved on while it started or stopped instances where shipyard does "
              "not run them (ECS: a task definition registered or reused, a service created, running counts while "
              "ECS rolls out)."),
    EventKind("release.progress", "A release target's activation moved on: objects uploaded or copied, the "
              "origin switched, the invalidation made, a line of a command's output (its own keys besides these).",
              data=("revision",)),
    EventKind("release.activated", "A release target made a release live (or live again); `record` is what it "
              "did (prefix, uploads, command).", data=("revision", "record")),
    EventKind("release.pruned", "Releases of a release target beyond `keep` were deleted, or an ECS service's "
              "old images in ECR (`target.ecr`).", data=("pruned", "kept", "failures")),
    EventKind("release.prune_failed", "Deleting old releases (or old ECR images) failed after a successful "
              "deploy (it stays succeeded).", "warning", data=("reason",)),
)
_ALARM_DATA = ("alarm", "state", "previous", "metric", "statistic", "comparison", "threshold", "values",
               "evaluated", "breaching", "reason", "labels")
_ANALYSIS_DATA = ("score", "verdict", "action", "baseline")
_ANALYSIS = (
    EventKind("alarm.alarm", "An alarm went to ALARM (during a bake, or under `shipyard watch`).", "critical",
              data=_ALARM_DATA),
    EventKind("alarm.ok", "An alarm went back to OK.", data=_ALARM_DATA),
    EventKind("alarm.insufficient_data", "An alarm has too little data to decide.", "warning", data=_ALARM_DATA),
    EventKind("analysis.waiting", "The canary judge had too little data and waits for more.", "warning",
              data=("reason",)),
    EventKind("analysis.pass", "The canary judge's verdict: pass.", data=_ANALYSIS_DATA),
    EventKind("analysis.marginal", "The canary judge's verdict: marginal.", "warning", data=_ANALYSIS_DATA),
    EventKind("analysis.fail", "The canary judge's verdict: fail (the deploy rolls back).", "warning",
              data=_ANALYSIS_DATA),
    EventKind("analysis.nodata", "The canary judge's verdict: no data.", "warning", data=_ANALYSIS_DATA),
)
_PROMOTION_DATA = ("promotion", "kind", "actor", "repos", "source_env", "target_env")
_FLEET = (
    EventKind("promotion.completed", "A promotion (or hotfix, fleet rollback) moved every repo.",
              data=_PROMOTION_DATA),
    EventKind("promotion.partial", "A promotion stopped with some repos moved: resume or abandon it.", "critical",
              data=_PROMOTION_DATA),
    EventKind("promotion.compensated", "A promotion failed and every moved repo was put back.", "critical",
              data=_PROMOTION_DATA),
    EventKind("promotion.failed", "A promotion failed before any repo moved.", "critical", data=_PROMOTION_DATA),
    EventKind("promotion.abandoned", "`promote --abandon`: an unfinished promotion was given up (no repo changed).",
              "warning", data=("promotion", "kind", "actor", "reason", "pushed", "not_pushed", "previous_state")),
)
_AUDIT_DATA = ("actor", "names")
_AUDIT = tuple(EventKind(f"secrets.{what}", summary, notified=False, data=_AUDIT_DATA) for what, summary in (
    ("set", "`shipyard secrets set` wrote a value (names only, never values)."),
    ("read", "`shipyard secrets get` printed a value."),
    ("deleted", "`shipyard secrets rm` removed a value."),
    ("generated", "`shipyard secrets generate` wrote new values."),
    ("synced", "`shipyard secrets sync github` wrote GitHub Actions secrets."),
    ("revealed", "`shipyard env show --reveal` printed values."),
))

KINDS: dict[str, EventKind] = {k.name: k for k in (*_DEPLOY, *_APPROVAL, *_CHECKLIST, *_ROLLBACK, *_STEPS,
                                                   *_ANALYSIS, *_FLEET, *_AUDIT)}


def kind(name: str) -> EventKind | None:
    """The registered kind called `name` (None for an unknown one, e.g. from a plugin)."""
    return KINDS.get(name)


def notified() -> list[EventKind]:
    """The kinds notification routes can match, in registry order."""
    return [k for k in KINDS.values() if k.notified]
