"""Replace the old set a batch at a time within surge and unavailability budgets (as Kubernetes does).

Invariants kept at every step, with N desired instances and the old set of size C serving:
- serving instances never drop below N - max_unavailable;
- serving plus starting instances never exceed N + max_surge.
An old instance leaves rotation (Route), is drained (Drain) and then retired (kept warm, not serving).
"""

from __future__ import annotations

from dataclasses import dataclass

from shipyard.domain.plan import Drain, RetireOld, Route, StartNew, Step, WaitHealthy
from shipyard.errors import UsageError
from shipyard.strategies.base import PlanInput


@dataclass(frozen=True)
class Rolling:
    batch_size: int = 1
    max_surge: int = 1
    max_unavailable: int = 0
    drain_timeout: float = 30.0
    name: str = "rolling"

    def traffic_steps(self, inp: PlanInput) -> list[Step]:
        if self.batch_size < 1:
            raise UsageError("rolling: batch_size must be at least 1")
        if self.max_surge + self.max_unavailable < 1:
            raise UsageError("rolling: max_surge + max_unavailable must be at least 1, or nothing can move")
        steps: list[Step] = []
        n, new, old = inp.desired, 0, inp.current
        while new < n:
            room = n + self.max_surge - (new + old)
            if room < 1:
                # No surge left: take old instances out first, as far as max_unavailable allows.
                drop = min(old, self.batch_size, (new + old) - (n - self.max_unavailable))
                if drop < 1:
                    raise UsageError("rolling: max_surge and max_unavailable leave no room to move")
                old -= drop
                steps += self._retire(new, old)
                continue
            new += min(self.batch_size, n - new, room)
            steps += [StartNew(new), WaitHealthy()]
            kept = min(old, n - new)       # each new instance replaces one old one
            if kept < old:
                old = kept
                steps += self._retire(new, old)
            else:
                steps.append(Route(new=new, old=old))
        if old > 0:
            steps += self._retire(new, 0)
        # A Route directly followed by another Route never served a request on its own.
        return [s for i, s in enumerate(steps)
                if not (isinstance(s, Route) and i + 1 < len(steps) and isinstance(steps[i + 1], Route))]

    def _retire(self, new: int, old_kept: int) -> list[Step]:
        return [Route(new=new, old=old_kept), Drain(self.drain_timeout), RetireOld(keep=old_kept)]
