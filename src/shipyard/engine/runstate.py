"""What a run knows that must survive its process, and the weight arithmetic for routing; both pure.

RunContext is persisted in deployments.context after every change, so `shipyard recover` (another
process) acts on the instances this run really started and the addresses it really routed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shipyard.domain.types import Instance
from shipyard.routers.base import WeightedBackend


@dataclass
class RunContext:
    """The persisted part of a run's knowledge (deployments.context)."""

    old: list[str] = field(default_factory=list)        # instance ids serving before, in routing order
    old_revision: str | None = None
    new: list[str] = field(default_factory=list)        # instance ids this run started or adopted
    routed: list[str] = field(default_factory=list)     # addresses the last Route gave traffic
    to_drain: list[str] = field(default_factory=list)   # addresses taken out, not yet drained
    # A release target's records (targets.base.ReleaseTarget): what was live before, what this run made
    # live, and for a manual rollback the record to make live again.
    previous: dict[str, Any] | None = None
    activated: dict[str, Any] | None = None
    restore: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunContext:
        data = data or {}
        return cls(old=list(data.get("old", [])), old_revision=data.get("old_revision"),
                   new=list(data.get("new", [])), routed=list(data.get("routed", [])),
                   to_drain=list(data.get("to_drain", [])), previous=data.get("previous"),
                   activated=data.get("activated"), restore=data.get("restore"))


def weights(news: list[Instance], olds: list[Instance], new_percent: int | None) -> list[WeightedBackend]:
    """Integer weights giving the new group `new_percent` of requests (equal shares when None)."""
    if new_percent is None or not olds or not news:
        wn = wo = 100
    elif new_percent >= 100:
        wn, wo = 100, 0
    else:
        wn, wo = new_percent * len(olds), (100 - new_percent) * len(news)
    out = [WeightedBackend(i.address, wn, i.revision, i.id) for i in news]
    out += [WeightedBackend(i.address, wo, i.revision, i.id) for i in olds if wo > 0]
    return out
