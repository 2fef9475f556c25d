"""Deployment strategies as pure planners: facts in, a Plan out, no I/O."""

from shipyard.strategies.all_at_once import AllAtOnce
from shipyard.strategies.base import PlanInput, Strategy, compose
from shipyard.strategies.blue_green import BlueGreen
from shipyard.strategies.canary import Canary, CanaryStep
from shipyard.strategies.hosts import HostBatches, HostRolling
from shipyard.strategies.rolling import Rolling

__all__ = ["AllAtOnce", "BlueGreen", "Canary", "CanaryStep", "HostBatches", "HostRolling", "PlanInput", "Rolling",
           "Strategy", "compose"]
