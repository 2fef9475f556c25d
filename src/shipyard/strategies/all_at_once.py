"""Stop everything, then start the new set: the naive restart, kept as the baseline that shows the cost."""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.domain.plan import Route, StartNew, Step, StopOld, WaitHealthy
from shipyard.strategies.base import PlanInput


@dataclass(frozen=True)
class AllAtOnce:
    name: str = "all_at_once"

    def traffic_steps(self, inp: PlanInput) -> list[Step]:
        return [StopOld(), StartNew(inp.desired), WaitHealthy(), Route(new=inp.desired, old=0)]
