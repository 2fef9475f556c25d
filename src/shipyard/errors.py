"""One exception tree for everything shipyard raises on purpose.

Third-party errors (SQLAlchemy, git, httpx, OSError from sockets) are mapped to these at the boundary
where they happen, so the CLI can print one line and choose an exit code without knowing the library.

    ShipyardError                      exit 1 unless noted
    ├── UsageError                     exit 2: the user asked for something that cannot be (bad flag, name)
    │   ├── ConfigError                exit 2: shipyard.yaml is wrong (file:line: key: message)
    │   ├── UnknownServiceError        exit 2
    │   ├── UnknownEnvironmentError    exit 2
    │   └── RevisionNotFoundError      exit 2
    ├── StoreError                     the state database failed or is at an unknown schema
    ├── LeaseHeldError                 a run already holds the (service, env) lease and --no-wait was given
    ├── AgentError                     the host agent is unreachable or refused a request
    │   └── AgentUnavailableError
    ├── ReleaseError                   export or build of a revision failed
    ├── HookError                      a lifecycle hook failed or timed out
    ├── HealthCheckError               instances did not become healthy
    ├── DeploymentFailed               a deployment ended failed or rolled back (carries its id and reason)
    └── InvalidTransition              a state change the rules forbid: always a bug, raised loudly
"""

from __future__ import annotations


class ShipyardError(Exception):
    """Base of every error shipyard raises on purpose; `str(err)` is the one line shown to users."""

    exit_code = 1


class UsageError(ShipyardError):
    exit_code = 2


class ConfigError(UsageError):
    """A config problem located in a file: rendered as `file:line: key: message`."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key, self.message = file, line, key, message
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{where}{key + ': ' if key else ''}{message}")


class UnknownServiceError(UsageError):
    pass


class UnknownEnvironmentError(UsageError):
    pass


class RevisionNotFoundError(UsageError):
    pass


class StoreError(ShipyardError):
    pass


class LeaseHeldError(ShipyardError):
    pass


class AgentError(ShipyardError):
    pass


class AgentUnavailableError(AgentError):
    pass


class ReleaseError(ShipyardError):
    pass


class HookError(ShipyardError):
    pass


class HealthCheckError(ShipyardError):
    pass


class DeploymentFailed(ShipyardError):
    def __init__(self, deployment_id: str, state: str, reason: str) -> None:
        self.deployment_id, self.state, self.reason = deployment_id, state, reason
        super().__init__(f"{deployment_id} {state}: {reason}")


class InvalidTransition(ShipyardError):
    pass
