"""The threshold state machine behind every health verdict, kept free of I/O and clocks so it can be
tested as data: feed it (ok, time) observations, read the state.

Semantics follow Docker's HEALTHCHECK and load-balancer target health:
- `healthy_threshold` consecutive successes make an instance healthy (from starting or unhealthy);
- `unhealthy_threshold` consecutive failures make it unhealthy;
- during `start_period` (measured from `started_at`) failures do not count, so a slow boot is not a failed
  deploy -- unless the instance has been healthy before, after which every failure counts, or the failure is
  an answer (the app is up and reports itself unhealthy, e.g. HTTP 500), which counts at once: waiting out
  the start period then would only delay the rollback of a release that is plainly broken.
"""

from __future__ import annotations

from enum import StrEnum


class HealthState(StrEnum):
    """Verdict on one instance; a str so it can be stored and printed as is."""

    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class HealthTracker:
    """Consecutive-count health of one instance."""

    def __init__(self, healthy_threshold: int = 2, unhealthy_threshold: int = 2, start_period: float = 0.0,
                 *, started_at: float = 0.0, initial: HealthState = HealthState.STARTING) -> None:
        if healthy_threshold < 1 or unhealthy_threshold < 1:
            raise ValueError("thresholds must be >= 1")
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.start_period = start_period
        self.started_at = started_at
        self.state = initial
        self.was_healthy = initial is HealthState.HEALTHY
        self.successes = 0            # consecutive
        self.failures = 0             # consecutive, counted ones only
        self.observations = 0
        self.last_ok: bool | None = None
        self.last_detail = ""

    def in_start_period(self, now: float) -> bool:
        """True while failures are still forgiven (never once the instance has been healthy)."""
        return not self.was_healthy and now - self.started_at < self.start_period

    def observe(self, ok: bool, now: float, detail: str = "", *, answered: bool = False) -> HealthState:
        """Record one probe result taken at `now` (same clock as `started_at`); return the new state.

        `answered`: the failure was the instance's own answer (not a refused connection or a timeout)."""
        self.observations += 1
        self.last_ok, self.last_detail = ok, detail
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.healthy_threshold:
                self.state = HealthState.HEALTHY
                self.was_healthy = True
            return self.state
        self.successes = 0
        if self.in_start_period(now) and not answered:
            return self.state
        self.failures += 1
        if self.failures >= self.unhealthy_threshold:
            self.state = HealthState.UNHEALTHY
        return self.state

    def __repr__(self) -> str:
        return (f"HealthTracker(state={self.state.value}, successes={self.successes}, "
                f"failures={self.failures}, last_detail={self.last_detail!r})")
