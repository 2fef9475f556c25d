"""Watching a release: metric providers, CloudWatch-style alarms and the canary judge.

Providers turn whatever a backend reports into `Sample`s; alarms and the judge only ever see Samples, so
they can be tested as pure functions and a new backend never touches the decision logic.
"""

from shipyard.monitoring.base import MetricProvider, Sample, Window

__all__ = ["MetricProvider", "Sample", "Window"]
