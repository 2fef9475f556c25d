"""The step vocabulary that strategies plan with and the engine executes.

Instances are spoken of as two groups: `new` (the revision being deployed) and `old` (the revision serving
before). Steps are frozen data so a plan can be stored, shown, compared in tests and resumed by index.
`describe(new, old)` says what a step does; the engine passes the two revisions' names (short sha and
ref) so what people read names revisions, not "new" and "old" (for a rollback the "new" revision is the
older one being brought back).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Group = Literal["new", "old"]


@dataclass(frozen=True)
class Step:
    kind: str = field(init=False, default="step")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind
        return data


@dataclass(frozen=True)
class RunHook(Step):
    hook: str
    kind: str = field(init=False, default="hook")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"hook {self.hook}"


@dataclass(frozen=True)
class Prepare(Step):
    """Export the revision into its release directory and build it there (once per revision)."""

    kind: str = field(init=False, default="prepare")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return "export and build release"


@dataclass(frozen=True)
class Migrate(Step):
    kind: str = field(init=False, default="migrate")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return "migrate"


@dataclass(frozen=True)
class Stage(Step):
    """A command stage of the pipeline (`stages.<name>`): before any instance starts, exit 0 or fail.
    `in_release`: it comes after the build, so it runs in the built release, else in a fresh checkout."""

    name: str
    in_release: bool = False
    kind: str = field(init=False, default="stage")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"stage {self.name}"


@dataclass(frozen=True)
class Scan(Step):
    """The vulnerability scan gate: run the scanner, judge its findings against the policy (`in_release`:
    on the built release, else on a fresh checkout)."""

    in_release: bool = False
    kind: str = field(init=False, default="scan")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return "vulnerability scan"


PIPELINE_KINDS = frozenset({"prepare", "migrate", "stage", "scan"})
"""Step kinds that are pipeline stages (their durations add up to a deployment's pipeline time)."""


@dataclass(frozen=True)
class StartNew(Step):
    """Start new-revision instances until `total` of them run."""

    total: int
    kind: str = field(init=False, default="start")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"start {new} instances (to {self.total})"


@dataclass(frozen=True)
class WaitHealthy(Step):
    """Wait until every started new instance passes its health check (healthy_threshold in a row)."""

    kind: str = field(init=False, default="wait_healthy")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"wait for {new} instances to be healthy"


@dataclass(frozen=True)
class Route(Step):
    """Point the router at `new` new instances and `old` old ones.

    With `new_percent` None every routed instance gets an equal share (rolling); otherwise the new group
    gets `new_percent` of requests split evenly among its instances (canary, blue/green).
    """

    new: int
    old: int
    new_percent: int | None = None
    kind: str = field(init=False, default="route")

    def describe(self, new: str = "new", old: str = "old") -> str:
        if self.new_percent is not None and (self.new_percent >= 100 or not self.old):
            return f"route 100% to {new} ({_count(self.new)})"
        if self.new_percent is not None:
            return (f"route {self.new_percent}% to {new} ({_count(self.new)}), {100 - self.new_percent}% to "
                    f"{old} ({_count(self.old)})")
        return f"route to {_count(self.new)} of {new} and {_count(self.old)} of {old}"


@dataclass(frozen=True)
class Drain(Step):
    """Wait for in-flight requests on old instances that the last Route took out of rotation."""

    timeout: float
    kind: str = field(init=False, default="drain")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"drain removed instances (up to {self.timeout:g}s)"


@dataclass(frozen=True)
class RetireOld(Step):
    """Take old instances out of service: kept warm for `keep_previous` seconds, or stopped if 0.

    `keep` old instances stay in service (the others, beyond `keep`, are retired).
    """

    keep: int
    kind: str = field(init=False, default="retire_old")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"retire {old} instances (keep {self.keep} in service)"


@dataclass(frozen=True)
class StopOld(Step):
    """Stop old instances right away (all_at_once): what a naive restart does."""

    kind: str = field(init=False, default="stop_old")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"stop {old} instances"


@dataclass(frozen=True)
class Pause(Step):
    seconds: float
    kind: str = field(init=False, default="pause")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"pause {self.seconds:g}s"


@dataclass(frozen=True)
class Analyze(Step):
    """Bake time: watch health (and, once monitoring exists, alarms) of the new set for `seconds`."""

    seconds: float
    kind: str = field(init=False, default="analyze")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"analyze {self.seconds:g}s"


@dataclass(frozen=True)
class PostChecklist(Step):
    """The environment's automated post items (engine.checklists), run once every other step passed: the
    deployment stays in progress meanwhile, and one with on_fail: rollback failing rolls it back."""

    items: int
    kind: str = field(init=False, default="checklist")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"post-deploy checklist ({self.items} check{'s' if self.items != 1 else ''} on {new})"


@dataclass(frozen=True)
class Activate(Step):
    """Make the release live as a whole on a release target (a static site, a command): no instances, no
    traffic split. `restore` makes a release that was live before live again (a manual rollback)."""

    restore: bool = False
    kind: str = field(init=False, default="activate")

    def describe(self, new: str = "new", old: str = "old") -> str:
        return f"make {new} live again" if self.restore else f"activate {new} (all at once)"


def _count(n: int) -> str:
    return f"{n} instance" if n == 1 else f"{n} instances"


@dataclass(frozen=True)
class Plan:
    strategy: str
    steps: tuple[Step, ...]

    def to_list(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self.steps]

    def with_post_checklist(self, items: int) -> Plan:
        """This plan with the post-deploy checklist as its last step (none when there is nothing to run)."""
        return Plan(self.strategy, (*self.steps, PostChecklist(items))) if items else self


STEP_TYPES: dict[str, type[Step]] = {
    cls.__dataclass_fields__["kind"].default: cls  # type: ignore[misc]
    for cls in (RunHook, Prepare, Migrate, Stage, Scan, StartNew, WaitHealthy, Route, Drain, RetireOld, StopOld, Pause,
                Analyze, Activate, PostChecklist)
}


def step_from_dict(data: dict[str, Any]) -> Step:
    """Rebuild a stored step (recovery resumes plans read back from the store)."""
    fields = {k: v for k, v in data.items() if k != "kind"}
    return STEP_TYPES[data["kind"]](**fields)
