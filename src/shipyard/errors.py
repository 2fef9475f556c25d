"""One exception tree for everything shipyard raises on purpose.

Third-party errors (SQLAlchemy, git, httpx, OSError from sockets) are mapped to these at the boundary
where they happen, so the CLI can print one line and choose an exit code without knowing the library.

    ShipyardError                      exit 1 unless noted
    ├── UsageError                     exit 2: the user asked for something that cannot be (bad flag, name)
    │   ├── ConfigError                exit 2: shipyard.yaml is wrong (file:line: key: message)
    │   ├── UnknownServiceError        exit 2
    │   ├── UnknownEnvironmentError    exit 2
    │   ├── UnknownHostError           exit 2: a host name not under `hosts:`
    │   ├── UnknownReleaseGroupError   exit 2: a release group not under `releases:`
    │   ├── RevisionNotFoundError      exit 2
    │   ├── MissingSecretsError        exit 2: required names resolve to nothing (all of them listed at once)
    │   ├── PluginError                exit 2: an installed target/router plugin is broken or declared twice
    │   ├── PreflightError             exit 2: a target's cloud resources are missing or closed (every gap
    │   │                              listed at once), found before anything changed
    │   ├── BranchNotAllowed           exit 2: the revision is on none of the env's `approvals.branches`
    │   └── NotFoundError              exit 2: no record with that id (a deployment, a promotion)
    ├── StoreError                     the state database failed, is at an unknown schema, empty or corrupt
    ├── OSFailure                      an operating-system call failed (file, directory, process): OSError
    │                                  mapped where it happens, one line with the path
    ├── LeaseHeldError                 a run already holds the (service, env) lease and --no-wait was given
    ├── AgentError                     the host agent is unreachable or refused a request
    │   ├── StatusError                an admin API (agent, routers) answered an error with its own status
    │   └── AgentUnavailableError
    ├── RouterError                    an external router (HAProxy) is unreachable, refused a command, or
    │                                  does not serve what was set
    ├── TargetError                    a target cannot place or reach instances (no free port on a host,
    │                                  more hosts unreachable than minimum_healthy_hosts allows), or a
    │                                  release target cannot activate (no such bucket, a deploy command failed),
    │                                  or ECR housekeeping could not read what ECS runs or list the images
    ├── ReleaseError                   export or build of a revision failed
    ├── SecretsError                   a secret provider failed (wrong master key, AWS unreachable or refused)
    ├── HookError                      a lifecycle hook failed or timed out
    ├── StageFailed                    a pipeline stage failed, timed out or (scan) found what blocks
    ├── HealthCheckError               instances did not become healthy
    ├── DeploymentFailed               a deployment ended failed or rolled back (carries its id and reason)
    │   └── ReleaseGroupFailed         a release group aborted: its members were rolled back (or failed)
    ├── NotCancellable                 a cancel asked of a deployment that is running or finished (HTTP 409)
    ├── DeploymentCancelled            a queued run whose record was cancelled while it waited: it ends untouched
    ├── ApprovalRefused                an approve/reject that cannot count: not an approver, the requester,
    │                                  twice, a used/forged/expired link, nothing awaiting approval (HTTP 409)
    ├── ChecklistRefused               a checklist confirm that cannot count: no such item, not a manual one,
    │                                  confirmed already, the deployment past waiting for it (HTTP 409)
    ├── ChecklistFailed                an automated checklist item failed (a pre item stops the deploy before
    │                                  its first step, a post item with on_fail: rollback rolls it back)
    ├── MonitoringError                a metric provider could not be reached or answered nonsense
    ├── AnalysisFailed                 an alarm fired or the canary judge failed during an analyze step
    ├── NotifyError                    a notification channel refused or could not be reached (never fails a deploy)
    ├── SshError                       a host could not be reached or used over SSH (names the host)
    │   ├── SshUnreachable             no route, no such name, network down
    │   ├── SshRefused                 nothing listens on the host's SSH port
    │   ├── SshTimeout                 connecting (or a remote command) took longer than allowed
    │   ├── SshAuthFailed              the host refused our key (or the key cannot be used)
    │   ├── SshDisconnected            the connection broke after it was made
    │   └── HostKeyError               the host's key is not the one in known_hosts (carries its fingerprint)
    │       ├── HostKeyUnknown         no key recorded for the host: `shipyard hosts trust NAME`
    │       └── HostKeyChanged         a different key is recorded: `shipyard hosts trust NAME --replace`
    ├── FleetError                     a multi-repo git operation failed; the report says where each repo is
    │   ├── GitError                   one git command failed (git's own last stderr line)
    │   ├── ReposNotReady              refused up front (dirty tree, detached HEAD, no remote/branch): nothing changed
    │   ├── PromotionConflict          merges would conflict or not fast-forward: nothing was pushed
    │   ├── PushFailed                 a push was rejected after others went through (put back or kept partial)
    │   ├── EnvironmentFrozen          a rollback (or the config) froze the env against deploys and promotion
    │   └── UnfinishedPromotion        a partial promotion between the same envs must be resumed or abandoned
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


class MissingSecretsError(UsageError):
    """Names a service requires that resolve to nothing or to "": every one of them, so one fix is enough."""

    def __init__(self, message: str, names: list[str] | None = None) -> None:
        self.names = list(names or [])
        super().__init__(message)


class UnknownHostError(UsageError):
    pass


class UnknownReleaseGroupError(UsageError):
    pass


class PluginError(UsageError):
    """A plugin's entry point cannot be loaded, is not what it claims, or two distributions declare one
    kind: the message names the distribution (the fix is on the installation, not in shipyard.yaml)."""


class PreflightError(UsageError):
    """What a target needs before it may change anything is missing (cluster, subnets, ports, roles)."""


class StoreError(ShipyardError):
    pass


class OSFailure(ShipyardError):
    """An OSError (no such file, name too long, permission denied, no space left) as one line."""

    @classmethod
    def of(cls, exc: OSError, doing: str = "") -> OSFailure:
        """`doing: <what the OS said>: <path>`; keeps the OSError as the cause."""
        what = exc.strerror or type(exc).__name__
        where = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        text = f"{what}: {' -> '.join(where)}" if where else (what if exc.strerror else str(exc) or what)
        err = cls(f"{doing}: {text}" if doing else text)
        err.__cause__ = exc
        return err


class LeaseHeldError(ShipyardError):
    pass


class AgentError(ShipyardError):
    pass


class StatusError(AgentError):
    """Base of the errors an admin API answers with a status of its own choosing."""

    status = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class AgentUnavailableError(AgentError):
    pass


class RouterError(ShipyardError):
    """An external router (HAProxy's runtime API) could not be reached, refused a command or reads back
    something else than what was set; the message names the router and what it said."""


class TargetError(ShipyardError):
    pass


class ReleaseError(ShipyardError):
    pass


class SecretsError(ShipyardError):
    """A secret provider failed; the message names the provider and what to fix, never a value."""


class HookError(ShipyardError):
    pass


class StageFailed(ShipyardError):
    """A pipeline stage (a command stage or the scan gate) refused the release; `output` and `detail` are
    stored with the step."""

    def __init__(self, message: str, *, output: str | None = None, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.output = output
        self.detail = detail


class HealthCheckError(ShipyardError):
    pass


class NotFoundError(UsageError):
    """No record with that id; the API answers 404."""


class NotCancellable(ShipyardError):
    """Only a queued deployment can be cancelled: a running one is rolled back, a finished one is history."""


class DeploymentCancelled(ShipyardError):
    """The run's queued record was cancelled while it waited for the lease; nothing was touched."""


class BranchNotAllowed(UsageError):
    """The revision asked for is on none of the branches the environment's approval gate allows."""


class ApprovalRefused(ShipyardError):
    """An approval or reject that was not recorded, and why (one line); the API answers 409."""


class ChecklistRefused(ShipyardError):
    """A checklist confirmation that was not recorded, and why (one line); the API answers 409."""


class ChecklistFailed(ShipyardError):
    """Automated checklist items failed; the message names each with its one-line reason."""


class DeploymentFailed(ShipyardError):
    def __init__(self, deployment_id: str, state: str, reason: str) -> None:
        self.deployment_id, self.state, self.reason = deployment_id, state, reason
        super().__init__(f"{deployment_id} {state}: {reason}")


class ReleaseGroupFailed(DeploymentFailed):
    """A release group ended aborted (its members put back) or failed (some could not be put back)."""


class InvalidTransition(ShipyardError):
    pass


class MonitoringError(ShipyardError):
    """A metric provider failed; distinct from "no data", which alarms handle by `treat_missing_data`."""


class AnalysisFailed(ShipyardError):
    """An analyze step's verdict was "roll back"; `detail` holds the samples and verdicts for the record."""

    def __init__(self, message: str, detail: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.detail = dict(detail or {})


class NotifyError(ShipyardError):
    """A channel failed to deliver; `retryable` tells the worker whether trying again can help, and
    `retry_after` carries a server's 429 Retry-After in seconds."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable, self.retry_after = retryable, retry_after


class FleetError(ShipyardError):
    """A multi-repo operation failed; `str()` is the one-line summary and `details` the per-repo lines
    ((repo, what is wrong or where it was left)) that the CLI prints before it."""

    def __init__(self, message: str, details: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


class GitError(FleetError):
    pass


class ReposNotReady(FleetError):
    pass


class PromotionConflict(FleetError):
    pass


class PushFailed(FleetError):
    pass


class EnvironmentFrozen(FleetError):
    pass


class UnfinishedPromotion(FleetError):
    """An earlier promotion between the same environments was not finished: resume or abandon it first."""


class SshError(ShipyardError):
    """Something about one host over SSH; `host` is its name in `hosts:`."""

    def __init__(self, message: str, host: str = "") -> None:
        super().__init__(message)
        self.host = host


class SshUnreachable(SshError):
    pass


class SshRefused(SshError):
    pass


class SshTimeout(SshError):
    pass


class SshAuthFailed(SshError):
    pass


class SshDisconnected(SshError):
    pass


class HostKeyError(SshError):
    """The host presented a key known_hosts does not trust; `fingerprint` is its SHA256 fingerprint."""

    def __init__(self, message: str, host: str = "", fingerprint: str = "") -> None:
        super().__init__(message, host)
        self.fingerprint = fingerprint


class HostKeyUnknown(HostKeyError):
    pass


class HostKeyChanged(HostKeyError):
    pass
