"""Health check models: how shipyard decides an instance is ready for traffic and still fine after.

The thresholds follow Docker and load-balancer practice (consecutive successes/failures, a start period
in which failures do not count) so that one slow first request neither fails a deploy nor hides a crash.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator

from shipyard.config.base import StrictModel
from shipyard.config.durations import Duration

DEFAULT_INTERVAL = 2.0
DEFAULT_TIMEOUT = 1.0
DEFAULT_THRESHOLD = 2
DEFAULT_START_PERIOD = 10.0
DEFAULT_DEADLINE = 120.0


class CheckBase(StrictModel):
    """Timing and thresholds shared by every kind of check."""

    interval: Duration = Field(default=DEFAULT_INTERVAL, gt=0, description="Time between two probes of one instance.")
    timeout: Duration = Field(default=DEFAULT_TIMEOUT, gt=0,
                              description="A probe that takes longer than this counts as a failure.")
    healthy_threshold: int = Field(default=DEFAULT_THRESHOLD, ge=1,
                                   description="Consecutive successes before an instance is healthy.")
    unhealthy_threshold: int = Field(default=DEFAULT_THRESHOLD, ge=1,
                                     description="Consecutive failures before an instance is unhealthy.")
    start_period: Duration = Field(
        default=DEFAULT_START_PERIOD, ge=0,
        description="Grace time after start in which failures do not count (unless it was healthy already).")
    deadline: Duration = Field(default=DEFAULT_DEADLINE, gt=0,
                               description="How long a deploy waits for new instances to become healthy.")


def _status_list(value: Any) -> Any:
    if isinstance(value, int | str) and not isinstance(value, bool):
        return [value]
    return value


class HttpCheck(CheckBase):
    """GET http://<instance><path>; healthy when the status is one of `expected_status`."""

    type: Literal["http"] = Field(default="http", description="Probe kind: `http`, `tcp` or `exec`.")
    path: str = Field(default="/health", description="Request path, starting with '/'.")
    expected_status: Annotated[list[int], BeforeValidator(_status_list, json_schema_input_type=int | list[int])] = (
        Field(default_factory=lambda: [200], min_length=1,
              description="Status code (or list of codes) that counts as healthy."))
    host: str | None = Field(default=None, description="Host header to send (default: the instance address).")

    @field_validator("path")
    @classmethod
    def _path_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"path must start with '/', got {value!r}")
        return value

    @field_validator("expected_status")
    @classmethod
    def _statuses_valid(cls, value: list[int]) -> list[int]:
        bad = [code for code in value if not 100 <= code <= 599]
        if bad:
            raise ValueError(f"not an HTTP status code: {bad[0]}")
        return value


class TcpCheck(CheckBase):
    """Healthy when a TCP connection to the instance address opens within `timeout`."""

    type: Literal["tcp"] = Field(description="Probe kind: `http`, `tcp` or `exec`.")


class ExecCheck(CheckBase):
    """Run a command (via /bin/sh) with HEALTH_ADDRESS/HEALTH_HOST/HEALTH_PORT set; exit 0 is healthy."""

    type: Literal["exec"] = Field(description="Probe kind: `http`, `tcp` or `exec`.")
    command: str = Field(min_length=1, description="Shell command to run; exit status 0 means healthy.")


HealthCheck = Annotated[HttpCheck | TcpCheck | ExecCheck, Field(discriminator="type")]
"""Any health check; `type` selects the probe (http when omitted)."""


def default_check_type(value: Any) -> Any:
    """Let `health: {path: /healthz}` mean an http check: the common case needs no `type`."""
    if isinstance(value, dict) and "type" not in value:
        return {"type": "http", **value}
    return value
