"""The engine's record of one deployment: every state change, step boundary and event goes through here.

Each call is its own transaction, committed before the engine moves on, so a run killed at any point leaves
a history that says exactly how far it got (DESIGN principle 2). A listener sees the same events live.
Everything passes the run's Redactor first, so no secret value reaches the store or the listener.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shipyard.config.alerting import Notifications
from shipyard.domain.deployment import DeployState, StepState
from shipyard.domain.plan import Step
from shipyard.notify.outbox import enqueue_for_event
from shipyard.secrets.redact import Redactor
from shipyard.store import Store
from shipyard.store import deployments as q
from shipyard.store import events as ev
from shipyard.store import steps as sq

Listener = Callable[[str, dict[str, Any]], None]


@dataclass
class Journal:
    store: Store
    deployment_id: str
    service: str
    env: str
    listener: Listener | None = None
    _steps: dict[tuple[str, int], int] = field(default_factory=dict)
    redactor: Redactor | None = None
    # Routes and channels: each event's outbox rows are written in the event's own transaction.
    notifications: Notifications | None = None

    def redact(self, text: str) -> str:
        """`text` with every registered secret value masked (for output stored or shown elsewhere)."""
        return self.redactor.redact(text) if self.redactor else text

    def event(self, kind: str, message: str = "", **data: Any) -> None:
        if self.redactor:
            message, data = self.redactor.redact(message), self.redactor.redact_data(data)
        with self.store.session() as s:
            row = ev.add_event(s, kind=kind, message=message, deployment_id=self.deployment_id,
                               service=self.service, env=self.env, data=data)
            enqueue_for_event(s, row, self.notifications)
        if self.listener:
            self.listener(kind, {"message": message, "deployment_id": self.deployment_id, **data})

    def transition(self, state: DeployState, reason: str | None = None, **fields: Any) -> None:
        reason = self.redact(reason) if reason else reason
        with self.store.session() as s:
            q.update_deployment(s, self.deployment_id, state=state, reason=reason, **fields)
        if self.listener:
            self.listener("state", {"state": str(state), "reason": reason})

    def update(self, **fields: Any) -> None:
        with self.store.session() as s:
            q.update_deployment(s, self.deployment_id, **fields)

    def step_started(self, phase: str, idx: int, step: Step, description: str | None = None) -> None:
        """`description`: what the step does, in words naming revisions (default: the step's own)."""
        text = description or step.describe()
        with self.store.session() as s:
            row = sq.start_step(s, self.deployment_id, phase, idx, step.kind, text, detail=step.to_dict())
            self._steps[(phase, idx)] = row.id
        if self.listener:
            self.listener("step.started", {"phase": phase, "idx": idx, "description": text})

    def step_finished(self, phase: str, idx: int, state: StepState, *, output: str | None = None,
                      error: str | None = None, detail: dict[str, Any] | None = None) -> None:
        if self.redactor:
            output, error = (self.redact(t) if t else t for t in (output, error))
            detail = self.redactor.redact_data(detail)
        with self.store.session() as s:
            sq.finish_step(s, self._steps.pop((phase, idx)), state, output=output, error=error, detail=detail)
        if self.listener:
            self.listener(f"step.{state}", {"phase": phase, "idx": idx, "error": error, **(detail or {})})
