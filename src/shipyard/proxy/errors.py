"""Errors of the router processes' admin API, carrying the HTTP status both ways (server and client).

They stay inside shipyard's tree (AgentError: routers are part of the host agent's world), so the CLI
prints them as one line; the status tells "no such router" (404) from "address taken" (409).
"""

from __future__ import annotations

from shipyard.errors import AgentUnavailableError, StatusError


class RouterRequestError(StatusError):
    """The router refused a request; `status` is the HTTP status it answered with."""


class RouterNotFound(RouterRequestError):
    status = 404


class RouterConflict(RouterRequestError):
    status = 409


class RouterUnavailableError(AgentUnavailableError):
    """No router process (and no keeper holding its socket) answers for this state dir."""
