"""Before a request changes anything: its values resolve, its environment is not frozen; and how a
refusal is recorded.

A request that cannot run (missing secrets, an unknown revision, a frozen environment, the lease held
with --no-wait, the router's address taken, an OS error before the first step) is refused before anything
is in progress: one line for the user, a `deploy.refused` event saying why (names, never values), and,
when a queued deployment row was already made, that row closed as cancelled with the same reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Any

from shipyard.domain.deployment import DeployState
from shipyard.engine.environment import Environment
from shipyard.engine.freeze import Freeze, FreezeOverride, admit, current_freeze
from shipyard.engine.journal import Journal
from shipyard.errors import MissingSecretsError, OSFailure, ShipyardError
from shipyard.notify.outbox import enqueue_for_event
from shipyard.secrets.redact import Redactor
from shipyard.store import Store
from shipyard.store import deployments as dq
from shipyard.store import events as eq


def as_shipyard_error(exc: BaseException) -> BaseException:
    """OSError as a one-line OSFailure; anything else unchanged."""
    return OSFailure.of(exc) if isinstance(exc, OSError) and not isinstance(exc, ShipyardError) else exc


def refusal_data(exc: BaseException, actor: str, **data: Any) -> dict[str, Any]:
    """What a `deploy.refused` event carries: who, why, and the missing names of a secrets refusal."""
    out = {"actor": actor, "reason": str(exc), **data}
    if isinstance(exc, MissingSecretsError):
        out["missing"] = exc.names
    return out


def record_refused(store: Store, service: str, env: str, exc: BaseException, *, actor: str,
                   notifications: Any = None, redactor: Redactor | None = None, **data: Any) -> None:
    """The `deploy.refused` event of a request refused before any deployment row was made (the CLI's
    checks before it starts the agent use this too)."""
    message, payload = str(exc), refusal_data(exc, actor, **data)
    if redactor is not None:
        message, payload = redactor.redact(message), redactor.redact_data(payload)
    with store.session() as s:
        row = eq.add_event(s, "deploy.refused", service=service, env=env, message=message, data=payload)
        enqueue_for_event(s, row, notifications)


def refuse(e: Environment, exc: BaseException, *, deployment_id: str | None = None, **data: Any) -> None:
    """Record `exc` as the refusal of this request; a queued row of it is closed as cancelled.

    A row already past queued or awaiting approval (its run started) is not a refusal: its run records its own end."""
    s = e.settings
    if deployment_id is None:
        record_refused(e.store, s.service, s.env, exc, actor=e.actor, notifications=e.notifications,
                       redactor=e.redactor, **data)
        return
    with e.store.session() as ses:
        row = dq.get_deployment(ses, deployment_id)
        # awaiting_approval: refused after its gate opened (the lease held with --no-wait, the address taken)
        queued = row is not None and DeployState(row.state) in (DeployState.QUEUED, DeployState.AWAITING_APPROVAL)
    if not queued:
        return
    journal = Journal(e.store, deployment_id, s.service, s.env, e.listener, redactor=e.redactor,
                      notifications=e.notifications)
    journal.event("deploy.refused", str(exc), **refusal_data(exc, e.actor, **data))
    journal.transition(DeployState.CANCELLED, str(exc), finished_at=datetime.now(UTC))


async def resolve_env(e: Environment) -> None:
    """Resolve every value (secrets included) before anything is recorded or started.

    A missing or empty required name fails here, all of them listed at once, with nothing in progress
    and no instance started (the caller records the refusal, naming the names, never values).
    """
    if e.secrets is None or e.env_resolved:
        return
    s = e.settings
    environ = await asyncio.to_thread(e.secrets, s.service, s.env)
    e.settings = dataclasses.replace(s, environ={**s.environ, **environ})
    e.env_resolved = True


def admit_freeze(e: Environment, override: FreezeOverride | None, what: str) -> Freeze | None:
    """EnvironmentFrozen unless the env is not frozen or `override` covers it; returns what was overridden."""
    s = e.settings
    return admit(current_freeze(e.store, s.env, in_config=s.frozen), override, what=f"{what} {s.service}/{s.env}")


def record_override(journal: Journal, freeze: Freeze | None, override: FreezeOverride | None, actor: str) -> None:
    """The audit line of a request let through a freeze: who, why, and which freeze."""
    if freeze is None or override is None:
        return
    journal.event("deploy.freeze_overridden", f"{freeze.reason}; overridden by {actor}: {override.reason}",
                  actor=actor, reason=override.reason, freeze=freeze.reason, frozen_by=freeze.promotion_id,
                  in_config=freeze.in_config)
