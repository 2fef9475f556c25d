"""The health state machine as data: (ok, time) observations in, states out."""

from __future__ import annotations

import pytest

from shipyard.health import HealthState, HealthTracker

S, H, U = HealthState.STARTING, HealthState.HEALTHY, HealthState.UNHEALTHY


@pytest.mark.parametrize(("params", "observations", "states"), [
    # healthy after healthy_threshold consecutive successes
    ((2, 2, 0), [(True, 1), (True, 2)], [S, H]),
    ((3, 2, 0), [(True, 1), (True, 2), (False, 3), (True, 4), (True, 5), (True, 6)], [S, S, S, S, S, H]),
    # unhealthy after unhealthy_threshold consecutive failures (no start period)
    ((2, 2, 0), [(False, 1), (False, 2)], [S, U]),
    ((2, 3, 0), [(False, 1), (True, 2), (False, 3), (False, 4), (False, 5)], [S, S, S, S, U]),
    # failures inside the start period do not count...
    ((2, 2, 10), [(False, 1), (False, 2), (False, 9.9), (False, 10), (False, 11)], [S, S, S, S, U]),
    # ...but successes do
    ((2, 2, 10), [(False, 1), (True, 2), (True, 3)], [S, S, H]),
    # once healthy, failures count even inside the start period
    ((1, 2, 60), [(True, 1), (False, 2), (False, 3)], [H, H, U]),
    # one failure does not flip a healthy instance; a success resets the failure count
    ((2, 2, 0), [(True, 1), (True, 2), (False, 3), (True, 4), (False, 5), (True, 6)], [S, H, H, H, H, H]),
    # recovery: unhealthy becomes healthy again after healthy_threshold successes
    ((2, 1, 0), [(False, 1), (True, 2), (True, 3)], [U, U, H]),
])
def test_transitions(params: tuple[int, int, float], observations: list[tuple[bool, float]],
                     states: list[HealthState]) -> None:
    tracker = HealthTracker(*params, started_at=0.0)
    assert [tracker.observe(ok, now) for ok, now in observations] == states


def test_counts_and_detail() -> None:
    tracker = HealthTracker(2, 2, 0, started_at=100.0)
    tracker.observe(True, 101, "GET / -> 200")
    tracker.observe(False, 102, "connection refused")
    assert (tracker.successes, tracker.failures, tracker.observations) == (0, 1, 2)
    assert tracker.last_detail == "connection refused" and tracker.last_ok is False
    assert "connection refused" in repr(tracker)


def test_start_period_is_measured_from_started_at() -> None:
    tracker = HealthTracker(1, 1, 5, started_at=100.0)
    assert tracker.in_start_period(104.9) and not tracker.in_start_period(105)
    assert tracker.observe(False, 104) is S
    assert tracker.observe(False, 105) is U


def test_initial_healthy_counts_every_failure() -> None:
    tracker = HealthTracker(2, 2, 30, started_at=0.0, initial=HealthState.HEALTHY)
    assert not tracker.in_start_period(1)
    assert [tracker.observe(False, t) for t in (1, 2)] == [H, U]


def test_thresholds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        HealthTracker(0, 1)


def test_an_unhealthy_answer_counts_even_in_the_start_period() -> None:
    t = HealthTracker(2, 2, start_period=30.0, started_at=0.0)
    assert t.observe(False, 1.0, "connection refused") is HealthState.STARTING   # still booting: forgiven
    assert t.observe(False, 1.1, "HTTP 500", answered=True) is HealthState.STARTING
    assert t.observe(False, 1.2, "HTTP 500", answered=True) is HealthState.UNHEALTHY
