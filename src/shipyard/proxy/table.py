"""The routing table: per (service, env) a listen address, weighted backends and router options.

It is the router processes' only state. The active router rewrites it atomically (shipyard.ipc) before
it acknowledges a change, and every router generation starts from it, so a router that crashed, or was
replaced by a newer version, serves the last committed table. Options are carried as an opaque dict:
RouterOptions parses them where a router is built, so keys added there need nothing here.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipyard.ipc import write_json_atomic

log = logging.getLogger(__name__)

TABLE_VERSION = 1


@dataclass
class RouteRecord:
    """One router: where it listens (`listen` is the bound address; `requested` what the caller asked,
    e.g. port 0), what it routes to, and how."""

    service: str
    env: str
    listen: str
    backends: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    requested: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.service, self.env)

    def public(self) -> dict[str, Any]:
        return {"service": self.service, "env": self.env, "listen": self.listen,
                "backends": [dict(b) for b in self.backends], "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RouteRecord:
        listen = str(data["listen"])
        return cls(service=str(data["service"]), env=str(data["env"]), listen=listen,
                   backends=[dict(b) for b in data.get("backends") or []],
                   options=dict(data.get("options") or {}), requested=str(data.get("requested") or listen))


def load_table(path: Path, legacy: Path | None = None) -> list[RouteRecord]:
    """The committed table; empty when there is none. An unreadable file is set aside, not fatal.

    `legacy` is the agent's state.json of versions that ran routers inside the agent: its routers are
    taken over once, when no table exists yet, so an upgrade keeps serving the same addresses.
    """
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return _from_legacy(legacy) if legacy is not None else []
    try:
        data = json.loads(raw)
        return [RouteRecord.from_dict(d) for d in data.get("routers", [])]
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        os.replace(path, aside)
        log.error("routing table %s is unreadable (%s); moved to %s, starting empty", path, exc, aside)
        return []


def _from_legacy(path: Path) -> list[RouteRecord]:
    try:
        data = json.loads(path.read_text())
        routers = [RouteRecord.from_dict(d) for d in data.get("routers") or []]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []
    if routers:
        log.info("taking over %d routers from %s", len(routers), path)
    return routers


def save_table(path: Path, routes: list[RouteRecord]) -> None:
    write_json_atomic(path, {"version": TABLE_VERSION, "saved_at": time.time(),
                             "routers": [asdict(r) for r in routes]})
