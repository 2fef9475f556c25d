"""What the agent must remember across its own restarts, and the one file it is kept in.

The agent may be SIGKILLed at any moment while its apps keep running; the next agent adopts them from
this file. So it is rewritten after every change, atomically (temp file, fsync, os.replace), so a
reader never sees half of it. The apps' environments (and the values their logs mask) carry secrets, so
they are stored sealed (AES-GCM) with a key in state.key beside it (0600, made by the first save): the
file is 0600 too, but a copy of it in a backup or a bug report then still shows no secret.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from shipyard.ipc import write_json_atomic
from shipyard.secrets.sealing import SealError, decode_key, encode_key, new_key, seal, unseal

log = logging.getLogger(__name__)

STARTING, RUNNING, BACKOFF, STOPPING, STOPPED, EXITED = (
    "starting", "running", "backoff", "stopping", "stopped", "exited")
LIVE = frozenset({STARTING, RUNNING, BACKOFF})       # the agent should keep these running
TERMINAL = frozenset({STOPPED, EXITED})

STATE_VERSION = 1


@dataclass
class InstanceRecord:
    """One supervised app instance: how to (re)start it and what happened to it last."""

    id: str
    service: str
    env: str
    revision: str
    cwd: str
    argv: list[str]
    port: int
    log_path: str
    deployment: str | None = None
    environ: dict[str, str] = field(default_factory=dict)
    stop_timeout: float = 10.0
    labels: dict[str, str] = field(default_factory=dict)
    restart: bool = True
    state: str = STARTING
    pid: int | None = None
    pid_start: int | None = None         # /proc start time of `pid`, to tell it from a reused pid
    restarts: int = 0
    started_at: float | None = None
    expires_at: float | None = None
    next_restart_at: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    killed: bool = False
    stopped_at: float | None = None
    redact: list[str] = field(default_factory=list)     # values masked in the log (never in public())

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def public(self) -> dict[str, Any]:
        """The API view: everything a caller may see (no environment, which can hold secrets)."""
        return {
            "id": self.id, "service": self.service, "env": self.env, "revision": self.revision,
            "deployment": self.deployment, "address": self.address, "port": self.port, "pid": self.pid,
            "state": self.state, "restarts": self.restarts, "started_at": self.started_at,
            "expires_at": self.expires_at, "next_restart_at": self.next_restart_at,
            "exit_code": self.exit_code, "signal": self.signal, "killed": self.killed,
            "stopped_at": self.stopped_at, "stop_timeout": self.stop_timeout,
            "log_path": self.log_path, "labels": dict(self.labels),
        }

    def stop_result(self) -> dict[str, Any]:
        """How the instance ended, as DELETE /v1/instances/{id} reports it."""
        return {"id": self.id, "state": self.state, "exit_code": self.exit_code, "signal": self.signal,
                "killed": self.killed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InstanceRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class AgentState:
    instances: list[InstanceRecord] = field(default_factory=list)
    # Routers as versions that ran them inside the agent stored them: carried over untouched until the
    # router processes have taken them into their own table (shipyard.proxy.table), then dropped.
    legacy_routers: list[dict[str, Any]] = field(default_factory=list)


_SEALED = ("environ", "redact")


class StateFile:
    """state.json: loaded once at agent start, saved whole after every change."""

    def __init__(self, path: Path, key_path: Path | None = None) -> None:
        self.path = path
        self.key_path = key_path or path.with_name("state.key")
        self._key: bytes | None = None

    def _load_key(self, create: bool) -> bytes | None:
        if self._key is None:
            try:
                self._key = decode_key(self.key_path.read_text())
            except FileNotFoundError:
                if not create:
                    return None
                key = new_key()
                fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(encode_key(key) + "\n")
                self._key = key
            except ValueError as exc:
                log.error("agent state key %s is unusable (%s): environments cannot be read", self.key_path, exc)
                return None
        return self._key

    def _seal(self, record: dict[str, Any]) -> dict[str, Any]:
        secret = {k: record.pop(k) for k in _SEALED}
        if any(secret.values()):
            key = self._load_key(create=True)
            assert key is not None
            record["sealed"] = seal(key, json.dumps(secret).encode(), f"shipyard-agent:{record['id']}")
        return record

    def _unseal(self, record: dict[str, Any]) -> dict[str, Any]:
        token = record.pop("sealed", None)
        if token is None:
            return record
        key = self._load_key(create=False)
        try:
            if key is None:
                raise SealError("no key")
            record.update(json.loads(unseal(key, token, f"shipyard-agent:{record.get('id')}")))
        except (SealError, ValueError) as exc:
            log.error("cannot open the environment of instance %s (%s, key %s): restarts get none",
                      record.get("id"), exc, self.key_path)
        return record

    def load(self) -> AgentState:
        """Read the file; a missing one is an empty state, an unreadable one is set aside, not fatal.

        Refusing to start over a corrupt file would leave the user with no agent at all; keeping the
        bad copy lets them recover by hand what the agent could not.
        """
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return AgentState()
        try:
            data = json.loads(raw)
            return AgentState(
                instances=[InstanceRecord.from_dict(self._unseal(dict(d))) for d in data.get("instances", [])],
                legacy_routers=[dict(d) for d in data.get("routers") or []],
            )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            log.error("state file %s is unreadable (%s); moved to %s, starting empty", self.path, exc, aside)
            return AgentState()

    def save(self, state: AgentState) -> None:
        data = {
            "version": STATE_VERSION,
            "saved_at": time.time(),
            "instances": [self._seal(asdict(r)) for r in state.instances],
        }
        if state.legacy_routers:
            data["routers"] = state.legacy_routers
        write_json_atomic(self.path, data)
