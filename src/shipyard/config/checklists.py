"""An environment's checklists: what must hold before a deploy's first step (`pre`) and after its last
(`post`), each item a statement a person confirms or a check shipyard runs (a command, an HTTP request, an
alarm watched for a while).

Pre items always block: every one must pass (or be confirmed) before the first step. A post item that
fails rolls the deployment back (`on_fail: rollback`, the default: a failed check after a deploy is a
failed deploy unless you say it only informs) or only tells people (`on_fail: notify`).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from shipyard.config.alerting import Alarm
from shipyard.config.base import Name, StrictModel
from shipyard.config.durations import Duration

_ITEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
KINDS = ("confirm", "command", "http", "metric")


def check_item_name(value: str) -> str:
    """An item's name: what `shipyard checklist confirm ID NAME` and the API's URL say."""
    if not _ITEM.fullmatch(value):
        raise ValueError(f"invalid checklist item name {value[:80]!r}: letters, digits, '_', '.' and '-' (up "
                         "to 64), starting with a letter or digit")
    return value


ItemName = Annotated[str, AfterValidator(check_item_name)]


class HttpItem(StrictModel):
    """An HTTP GET that must answer with the expected status."""

    url: str = Field(pattern=r"^https?://", max_length=2000, description="URL to GET (http or https).")
    expect_status: int = Field(default=200, ge=100, le=599, description="The status code that passes.")
    timeout: Duration = Field(default=10.0, gt=0, le=600, description="Give up (and fail) after this long.")


class MetricItem(StrictModel):
    """An alarm that must stay out of ALARM for `for` (a post item: the deployment stays in its post-check
    phase that long), e.g. "5xx ratio below 1% for 30 minutes" is the alarm `http_5xx_ratio > 0.01`."""

    alarm: Name | Alarm = Field(description="A name under the top-level `alarms:`, or an alarm written out "
                                            "here (metric, statistic, period, comparison, threshold, ...).")
    for_: Duration = Field(alias="for", gt=0, le=7 * 86400,
                           description="How long the alarm is watched; it passes if it never fires meanwhile.")


class ChecklistItem(StrictModel):
    """One item: exactly one of `confirm`, `command`, `http` or `metric`."""

    name: ItemName = Field(description="Unique within the environment's checklists; how people confirm it.")
    confirm: str | None = Field(default=None, min_length=1, max_length=500,
                                description='A statement a person confirms ("DB backup taken").')
    command: list[str] | None = Field(default=None, min_length=1,
                                      description="argv run without a shell (exit 0 passes), e.g. "
                                                  '["./bin/staging-tests-passed", "--since", "1d"].')
    timeout: Duration = Field(default=300.0, gt=0, le=86400,
                              description="A `command` running longer than this fails.")
    http: HttpItem | None = Field(default=None, description="An HTTP check.")
    metric: MetricItem | None = Field(default=None, description="An alarm watched over a duration.")
    on_fail: Literal["rollback", "notify"] | None = Field(
        default=None, description="Post items: a failure rolls the deployment back (`rollback`, the default) or "
                                  "only emits `checklist.item.failed` for notifications (`notify`). Pre items "
                                  "always block and may not set it.")

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value[0] or any("\x00" in a for a in value)):
            raise ValueError("command needs a program first and no NUL characters")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> ChecklistItem:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            said = ", ".join(given) if given else "none"
            raise ValueError(f"item {self.name!r}: give exactly one of confirm, command, http or metric "
                             f"(got {said})")
        if self.confirm is not None and self.on_fail is not None:
            raise ValueError(f"item {self.name!r}: a confirm item has no on_fail (nothing runs that could fail)")
        return self

    @property
    def kind(self) -> str:
        """manual | command | http | metric (what the API and `show` call it)."""
        return "manual" if self.confirm is not None else next(k for k in KINDS[1:] if getattr(self, k) is not None)


class Checklists(StrictModel):
    """Items checked before a deploy's first step and after its last (docs/approvals.md, Checklists)."""

    pre: list[ChecklistItem] = Field(default_factory=list,
                                     description="Before the first step: all must pass; manual ones are waited "
                                                 "for holding no lease.")
    post: list[ChecklistItem] = Field(default_factory=list,
                                      description="After the last step: automated ones run (the deployment stays "
                                                  "in progress meanwhile), manual ones may be confirmed later.")
    timeout: Duration = Field(default=86400.0, gt=0, le=90 * 86400,
                              description="A deploy whose manual pre items are not all confirmed this long after "
                                          "it was requested is cancelled (with an approval gate: its timeout).")

    @model_validator(mode="after")
    def _names(self) -> Checklists:
        seen: set[str] = set()
        for item in [*self.pre, *self.post]:
            if item.name in seen:
                raise ValueError(f"checklist item {item.name!r} named twice (names are unique across pre and post)")
            seen.add(item.name)
        for item in self.pre:
            if item.on_fail is not None:
                raise ValueError(f"pre item {item.name!r}: pre items always block; on_fail is for post items")
        return self


def checklist_problems(data: dict[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Metric items naming an alarm that is not under the top-level `alarms:`."""
    alarms = data.get("alarms") or {}
    out: list[tuple[tuple[str | int, ...], str]] = []
    for env_name, env in (data.get("environments") or {}).items():
        lists = (env or {}).get("checklists") if isinstance(env, dict) else None
        if not isinstance(lists, dict):
            continue
        for phase in ("pre", "post"):
            for pos, item in enumerate(lists.get(phase) or []):
                metric = item.get("metric") if isinstance(item, dict) else None
                named = metric.get("alarm") if isinstance(metric, dict) else None
                if isinstance(named, str) and named not in alarms:
                    known = ", ".join(sorted(alarms)) or "none defined"
                    out.append((("environments", env_name, "checklists", phase, pos, "metric", "alarm"),
                                f"unknown alarm {named!r} (alarms: {known})"))
    return out


def item_spec(item: ChecklistItem, alarms: dict[str, Any]) -> dict[str, Any]:
    """What a deployment snapshots of an item (a named alarm written out), so a config edited while it
    waits or runs, or another daemon, checks it the same way."""
    spec: dict[str, Any] = {"timeout": float(item.timeout)}
    if item.confirm is not None:
        spec["confirm"] = item.confirm
    if item.command is not None:
        spec["command"] = list(item.command)
    if item.http is not None:
        spec["http"] = item.http.model_dump()
    if item.metric is not None:
        alarm = item.metric.alarm
        resolved = alarms[alarm] if isinstance(alarm, str) else alarm
        spec["metric"] = {"alarm_name": alarm if isinstance(alarm, str) else item.name,
                          "alarm": resolved.model_dump(), "for": float(item.metric.for_)}
    return spec
