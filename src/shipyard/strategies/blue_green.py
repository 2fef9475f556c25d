"""Start the whole new set beside the old one, verify it, then switch all traffic at once."""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.domain.plan import Drain, RetireOld, Route, StartNew, Step, WaitHealthy
from shipyard.strategies.base import PlanInput


@dataclass(frozen=True)
class BlueGreen:
    drain_timeout: float = 30.0
    name: str = "blue_green"

    def traffic_steps(self, inp: PlanInput) -> list[Step]:
        return [
            StartNew(inp.desired),
            WaitHealthy(),
            Route(new=inp.desired, old=0, new_percent=100),
            Drain(self.drain_timeout),
            RetireOld(keep=0),
        ]
