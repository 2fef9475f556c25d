"""What to run and how to retry it: pure data and functions, no processes (unit-testable as data).

Kept apart from the supervisor so the rules that shape an app's world (its environment, its restart
delays, its id) can be read and tested without starting anything.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

from shipyard.agent.state import InstanceRecord
from shipyard.secrets.redact import REDACT_ENV
from shipyard.secrets.scrub import scrubbed


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial` doubling per consecutive failure up to `maximum`.

    A process that stayed up `reset_after` seconds counts as healthy again, so one crash after a week
    does not inherit the delay of last week's crash loop.
    """

    initial: float = 0.5
    maximum: float = 30.0
    reset_after: float = 30.0

    def delay(self, failures: int) -> float:
        return float(min(self.maximum, self.initial * (2 ** min(failures, 32))))


@dataclass
class InstanceSpec:
    """What a caller asks for; the supervisor fills in id, port, log path and process facts."""

    service: str
    env: str
    revision: str
    argv: list[str]
    cwd: str
    environ: dict[str, str] = field(default_factory=dict)
    deployment: str | None = None
    port: int | None = None
    stop_timeout: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    restart: bool = True
    redact: list[str] = field(default_factory=list)    # values the instance's log must mask
    id: str | None = None      # chosen by the caller so a retried start is recognised, not repeated


def take_redact(environ: dict[str, str]) -> list[str]:
    """Remove the reserved REDACT_ENV key from a launch environment and return its values.

    The engine sends them there so the agent API stays as it is; the app never sees the key.
    """
    raw = environ.pop(REDACT_ENV, None)
    try:
        values = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []


INSTANCE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def new_instance_id(service: str, env: str, revision: str) -> str:
    """Unique enough per host (4 random bytes), readable in `ps` and logs, safe as a file name."""
    return f"{service}-{env}-{revision[:8]}-{secrets.token_hex(4)}"


def valid_instance_id(value: str) -> bool:
    return INSTANCE_ID.fullmatch(value) is not None


def build_env(rec: InstanceRecord) -> dict[str, str]:
    """A minimal base (not the agent's whole environment, which would leak between projects)."""
    env = scrubbed()
    env.update(rec.environ)
    env.update(PORT=str(rec.port), SHIPYARD_INSTANCE=rec.id, SHIPYARD_SERVICE=rec.service,
               SHIPYARD_ENV=rec.env, SHIPYARD_REVISION=rec.revision)
    if rec.deployment:
        env["SHIPYARD_DEPLOYMENT"] = rec.deployment
    return env
