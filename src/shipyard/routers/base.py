"""Who gets traffic. Weights are integers per backend; the router turns them into per-request choices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class WeightedBackend:
    address: str
    weight: int
    revision: str
    instance: str


class Router(Protocol):
    async def ensure(self) -> str | None:
        """Create the listener if it does not exist (idempotent); return the front address it listens on
        (None: this router cannot tell). A router without a fixed address keeps the one it has."""
        ...

    async def set_backends(self, backends: list[WeightedBackend]) -> None:
        """Replace the backend set atomically; applies to the next request."""
        ...

    async def backends(self) -> list[WeightedBackend]:
        """The backend set the router is using now."""
        ...

    async def drain(self, address: str, timeout: float, ws_timeout: float | None = None) -> int:
        """Wait for in-flight requests of a backend taken out of the set; return connections left open."""
        ...

    async def verify(self, backends: list[WeightedBackend]) -> bool | None:
        """Whether the router really serves exactly these weights (None: cannot tell)."""
        ...

    async def stats(self) -> dict[str, Any]:
        ...


def counts_in_flight(router: object) -> bool:
    """Whether the router's drain() counts the connections left. A router that cannot (ALB: it only waits
    its target group's deregistration delay and answers 0) says so with `counts_in_flight = False`."""
    return bool(getattr(router, "counts_in_flight", True))
