"""Health checks: probes (http, tcp, exec), the threshold state machine, waiting and monitoring."""

from shipyard.health.checker import HealthMonitor, InstancesUnhealthy, OnChange, wait_healthy
from shipyard.health.probes import Prober, ProbeResult, probe, split_address
from shipyard.health.tracker import HealthState, HealthTracker

__all__ = ["HealthMonitor", "HealthState", "HealthTracker", "InstancesUnhealthy", "OnChange", "ProbeResult",
           "Prober", "probe", "split_address", "wait_healthy"]
