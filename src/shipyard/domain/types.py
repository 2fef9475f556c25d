"""Values that cross module boundaries: a revision of a service's code and an instance running it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Revision:
    """A git commit of a service's repo; `ref` is what the user asked for (branch, tag or sha)."""

    sha: str
    ref: str = ""
    subject: str = ""
    author: str = ""                 # the commit's author name (shown by the dashboard)

    @property
    def short(self) -> str:
        return self.sha[:8]


@dataclass(frozen=True)
class Instance:
    """One running copy of a revision, reachable by the router at `address` (host:port)."""

    id: str
    service: str
    env: str
    revision: str
    address: str
    state: str = "running"           # starting | running | backoff (exited, restart pending) | exited | stopped
    pid: int | None = None
    deployment: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None     # how its last run ended, while it waits to be restarted (None: running)
    signal: int | None = None
    restarts: int = 0
    log_path: str | None = None      # where its output goes, for a report that says where to look
