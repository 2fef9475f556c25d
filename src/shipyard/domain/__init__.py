"""Pure domain types: no I/O here, so planners and rules can be tested as data."""

from shipyard.domain.deployment import DeployState, StepState, check_transition, new_deployment_id
from shipyard.domain.plan import (
    Analyze,
    Drain,
    Migrate,
    Pause,
    Plan,
    Prepare,
    RetireOld,
    Route,
    RunHook,
    StartNew,
    Step,
    StopOld,
    WaitHealthy,
)
from shipyard.domain.types import Instance, Revision

__all__ = [
    "Analyze",
    "DeployState",
    "Drain",
    "Instance",
    "Migrate",
    "Pause",
    "Plan",
    "Prepare",
    "RetireOld",
    "Revision",
    "Route",
    "RunHook",
    "StartNew",
    "Step",
    "StepState",
    "StopOld",
    "WaitHealthy",
    "check_transition",
    "new_deployment_id",
]
