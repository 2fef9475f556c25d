"""What a request acts on (one service in one environment, with its live target and router) and what it
ends with. Kept apart from the request logic so the admission checks and the deployer share them without
importing each other."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shipyard.domain.deployment import DeployState
from shipyard.engine.journal import Listener
from shipyard.engine.settings import ServiceSettings
from shipyard.errors import DeploymentFailed
from shipyard.releases.store import ReleaseStore
from shipyard.routers.base import Router
from shipyard.secrets.redact import Redactor
from shipyard.store import Store
from shipyard.store.owner import current_owner
from shipyard.targets.base import Target

RUNNING_STATES = ("running", "starting", "backoff")
EnvSource = Callable[[str, str], Mapping[str, str]]
"""(service, env) -> every variable resolved (secrets included), or MissingSecretsError naming all gaps."""


@dataclass
class Environment:
    """What a request needs to act on one (service, env): settings plus the live target and router."""

    settings: ServiceSettings
    store: Store
    target: Target
    router: Router
    releases: ReleaseStore
    actor: str = "cli"
    listener: Listener | None = None
    owner: str = field(default_factory=current_owner)
    secrets: EnvSource | None = None           # None: settings.environ is used as configured (tests, fakes)
    redactor: Redactor = field(default_factory=Redactor)
    notifications: Any = None                  # config.notifications: routes events into the outbox
    metrics: Any = None                        # MetricProvider for alarms/judge; None = the router's counters
    env_resolved: bool = False
    # The release group (engine.groups) this request runs inside: the group holds the (service, env) lease
    # for its whole duration, so the run neither takes nor gives it back, and its rows are linked to the group.
    group: str | None = None


@dataclass(frozen=True)
class Outcome:
    deployment_id: str
    state: DeployState
    reason: str | None
    revision: str
    address: str | None = None       # the router's front address (the one it picked when listen is unset)

    def raise_for_state(self) -> None:
        if self.state is not DeployState.SUCCEEDED:
            raise DeploymentFailed(self.deployment_id, str(self.state), self.reason or "")
