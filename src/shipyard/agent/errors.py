"""Agent errors that carry an HTTP status, so the admin API and its client map them both ways.

They stay inside shipyard's tree (subclasses of AgentError), so the CLI needs no extra handling; the
status lets a caller tell "no such instance" (404) from "port already taken" (409) without parsing text.
"""

from __future__ import annotations

from shipyard.errors import StatusError


class AgentRequestError(StatusError):
    """The agent refused a request; `status` is the HTTP status it answered with."""


class NotFoundError(AgentRequestError):
    status = 404


class ConflictError(AgentRequestError):
    status = 409
