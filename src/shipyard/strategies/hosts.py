"""Rolling over hosts, CodeDeploy's way: a batch of hosts at a time, sized by `batch` and minimum_healthy_hosts.

A fleet is counted in hosts, not instances: with `per_host` instances on each of H hosts, a batch of b hosts
is b·per_host instances, and the instance-level rolling planner (rolling.py) does the rest with these budgets:
- surge: the batch's new instances start beside the old ones (max_surge = the batch), so no host ever leaves
  service before its replacement is healthy; the old ones are then drained and kept warm;
- in_place: the batch's old instances leave rotation, drain and stop first (max_unavailable = the batch),
  then the new ones take their ports.
Which instances form a batch is the target's business (targets/ssh.py places new instances host by host in
the configured order and says which old ones to keep serving), so that a batch is always whole hosts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shipyard.domain.plan import Step
from shipyard.errors import UsageError
from shipyard.strategies.base import PlanInput
from shipyard.strategies.rolling import Rolling


@dataclass(frozen=True)
class HostBatches:
    """How many hosts may be out of service (or being replaced) at once, from the config's two knobs."""

    batch: str | None = None                   # one_at_a_time | half_at_a_time | all_at_once
    minimum_healthy: int | str | None = None   # a count, or "NN%" of the hosts (rounded up)

    def min_healthy(self, hosts: int) -> int:
        """Hosts that must keep serving, of `hosts` in the deploy (CodeDeploy: percent rounded up)."""
        value = self.minimum_healthy
        if value is None:
            return 0
        if isinstance(value, str):
            return math.ceil(hosts * int(value.rstrip("%")) / 100)
        return int(value)

    def batch_hosts(self, hosts: int) -> int:
        """Hosts per batch; UsageError when minimum_healthy_hosts leaves none to deploy to."""
        if hosts < 1:
            raise UsageError("no host to deploy to")
        by_batch = {"one_at_a_time": 1, "half_at_a_time": max(1, hosts // 2), "all_at_once": hosts}
        if self.batch is None and self.minimum_healthy is None:
            return 1
        size = by_batch[self.batch] if self.batch else hosts
        if self.minimum_healthy is not None:
            keep = self.min_healthy(hosts)
            if keep >= hosts:
                raise UsageError(f"minimum_healthy_hosts {self.minimum_healthy} of {hosts} host"
                                 f"{'s' if hosts != 1 else ''} leaves none to deploy to")
            size = min(size, hosts - keep)
        return size

    def may_skip(self, hosts: int, reachable: int) -> bool:
        """Whether a deploy may go on without the unreachable hosts: only with an explicit
        minimum_healthy_hosts that the reachable ones still meet while leaving at least one to deploy to
        (an unreachable host is an unhealthy one)."""
        return self.minimum_healthy is not None and reachable > self.min_healthy(hosts) and reachable >= 1


@dataclass(frozen=True)
class HostRolling:
    """Rolling with host batches (strategy `rolling` with `per: host`)."""

    per_host: int = 1
    batches: HostBatches = HostBatches()
    in_place: bool = False
    drain_timeout: float = 30.0
    name: str = "rolling"

    def instance_rolling(self, hosts: int) -> Rolling:
        """The instance-level budgets equivalent to this batch of hosts (see the module docstring)."""
        size = self.batches.batch_hosts(hosts) * self.per_host
        if self.in_place:
            return Rolling(batch_size=size, max_surge=0, max_unavailable=size, drain_timeout=self.drain_timeout)
        return Rolling(batch_size=size, max_surge=size, max_unavailable=0, drain_timeout=self.drain_timeout)

    def traffic_steps(self, inp: PlanInput) -> list[Step]:
        hosts = max(1, inp.desired // self.per_host)
        return self.instance_rolling(hosts).traffic_steps(inp)
