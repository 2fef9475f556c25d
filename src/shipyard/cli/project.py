"""Locate the project, load its config, open its store, reach its agent: what every command starts with.

Only the config is loaded up front. The store, the agent client, the secrets and the engine are imported
when a command first asks for them: each `shipyard` call is a new process, and one that never opens the
store (`config validate`, `agent status`) should not pay for loading SQLAlchemy, nor `status` for the
engine (see COMMANDS in cli/main.py).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.cli import render
from shipyard.config import find_config, load_config
from shipyard.secrets.redact import Redactor

if TYPE_CHECKING:
    from shipyard.agent.client import AgentClient
    from shipyard.engine.deployer import Environment
    from shipyard.engine.journal import Listener
    from shipyard.engine.settings import ServiceSettings
    from shipyard.hosts.agent import RemoteAgents
    from shipyard.routers.base import Router
    from shipyard.secrets.context import SecretsContext
    from shipyard.ssh import SshPool
    from shipyard.store import Store
    from shipyard.targets.ssh import SshTarget


@dataclass
class Project:
    config_path: Path
    config: Any
    _store: Store | None = field(default=None, repr=False)
    redactor: Redactor = field(default_factory=Redactor, repr=False)
    _fleet: tuple[SshPool, RemoteAgents] | None = field(default=None, repr=False)
    overrides: dict[str, str] = field(default_factory=dict)      # `--set NAME=VALUE` (never secrets)

    def __post_init__(self) -> None:
        # Whatever this command resolves is masked in everything it prints from now on.
        render.use_redactor(self.redactor)

    @classmethod
    def load(cls, config: Path | None = None) -> Project:
        path = config.resolve() if config else find_config(Path.cwd())
        return cls(config_path=path, config=load_config(path))

    @property
    def root(self) -> Path:
        return self.config_path.parent

    @property
    def state_dir(self) -> Path:
        return self.root / ".shipyard"

    @property
    def agent_dir(self) -> Path:
        return self.state_dir / "agent"

    @cached_property
    def store(self) -> Store:
        """The state database (`state:`, relative SQLite paths anchored at shipyard.yaml's directory)."""
        from shipyard.store import Store, default_url
        from shipyard.store.db import anchored

        url = anchored(self.config.state, self.root) if self.config.state else default_url(self.root)
        self._store = Store.open(url)
        return self._store

    @contextlib.contextmanager
    def agent_starting(self) -> Iterator[None]:
        """Start the agent, as `agent()` would, while the block runs: where nothing runs yet, the keeper and
        the agent take about a second to come up, which they spend while this command does other work
        (opens its store). The block is left only once that start has ended, so no command exits with a
        keeper half-started; a failed start is raised after the block (an error of the block wins)."""

        started: Future[None] = Future()

        def start() -> None:
            try:
                self.ensure_agent()
            except BaseException as exc:
                started.set_exception(exc)
            else:
                started.set_result(None)

        threading.Thread(target=start, name="agent-start", daemon=True).start()
        try:
            yield
        finally:
            failed = started.exception()
        if failed is not None:
            raise failed

    def agent(self, *, start: bool = True) -> AgentClient:
        """A client for this project's agent; starts the agent first unless told not to."""
        from shipyard.agent.client import AgentClient

        if start:
            self.ensure_agent()
        return AgentClient(self.agent_dir)

    def ensure_agent(self) -> None:
        """Start this project's keeper and agent unless they run (with its `agent:` settings)."""
        from shipyard.agent.daemon import ensure_agent

        ensure_agent(self.agent_dir, config=self.config_path, router_workers=self.config.agent.workers_arg())

    def settings(self, service: str, env: str) -> ServiceSettings:
        from shipyard.engine.settings import service_settings

        return service_settings(self.config, self.root, service, env)

    @cached_property
    def secrets(self) -> SecretsContext:
        """Providers, overrides and resolved values of this invocation (values registered for masking)."""
        from shipyard.secrets.context import SecretsContext

        return SecretsContext(self.config, self.root, redactor=self.redactor, overrides=self.overrides)

    def environment(self, service: str, env: str, agent: AgentClient, *,
                    listener: Listener | None = None) -> Environment:
        from shipyard.engine.deployer import Environment
        from shipyard.releases.store import ReleaseStore
        from shipyard.targets.base import Target
        from shipyard.targets.local import LocalTarget

        s = self.settings(service, env)
        target: Target = self.ssh_target(s, agent) if getattr(s.target, "type", "local") == "ssh" \
            else LocalTarget(agent, service, env)
        return Environment(settings=s, store=self.store, target=target,
                           router=self.router(s, agent),
                           releases=ReleaseStore(self.state_dir / "releases"), actor=actor(),
                           listener=listener, secrets=self.secrets.environ_for, redactor=self.redactor,
                           notifications=self.config.notifications)

    def ssh_key(self) -> str | None:
        """The SSH client key's text (`ssh.key` with its secrets filled, or `ssh.key_file`), masked in all
        output from now on; None when neither is set."""
        ssh = self.config.ssh
        if ssh.key_file:
            path = self.root / ssh.key_file
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                from shipyard.errors import OSFailure

                raise OSFailure.of(exc, "reading ssh.key_file") from exc
            self.secrets.track(text)    # each line of it too (the Redactor splits multi-line values)
            return text
        if ssh.key:
            return self.secrets.fill(ssh.key, "ssh.key")
        return None

    def ssh_pool(self) -> SshPool:
        """A pool of SSH connections to `hosts:` for this invocation (close it, or use `async with`)."""
        from shipyard.ssh import SshPool, hosts_from_config, options_from_config

        return SshPool(hosts_from_config(self.config), options_from_config(self.config, self.root, self.ssh_key()))

    def fleet(self, agent: AgentClient) -> tuple[SshPool, RemoteAgents]:
        """This invocation's SSH pool and the hosts' agents behind it, opened once and closed with `agent`."""
        if self._fleet is None:
            from shipyard.hosts.agent import RemoteAgents

            pool = self.ssh_pool()
            agents = RemoteAgents(pool)

            async def close() -> None:
                self._fleet = None
                await agents.aclose()
                await pool.close()

            agent.closing.append(close)
            self._fleet = (pool, agents)
        return self._fleet

    def ssh_target(self, s: ServiceSettings, agent: AgentClient) -> SshTarget:
        """The `type: ssh` target of one (service, env): its hosts' agents over SSH, releases shipped there."""
        from shipyard.hosts.ship import ship_release
        from shipyard.targets.ssh import FleetHost, SshTarget

        pool, agents = self.fleet(agent)
        cfg = s.target
        fleet = [FleetHost(name, self.config.host(name).address, self.config.host(name).release_dir)
                 for name in cfg.hosts]

        async def ship(hosts: Sequence[str], release: Path, service: str, keep: int,
                       in_use: set[str]) -> dict[str, Any]:
            results = await ship_release(pool, list(hosts), release, service, release.name, keep, in_use=in_use)
            return {name: getattr(r, "__dict__", r) for name, r in results.items()}

        return SshTarget(agents, fleet, s.service, s.env, per_host=cfg.per_host, port=cfg.port, mode=cfg.mode,
                         ship=ship)

    def router(self, s: ServiceSettings, agent: AgentClient) -> Router:
        """The router `deploy.router` names for one (service, env): the agent's built-in one, or a HAProxy
        driven through its stats socket (a relative socket path starts at shipyard.yaml's directory)."""
        if getattr(s.router, "type", "builtin") == "haproxy":
            from shipyard.routers.haproxy import HaproxyRouter, UnixSocketChannel

            cfg = s.router
            path = Path(cfg.socket) if Path(cfg.socket).is_absolute() else self.root / cfg.socket
            return HaproxyRouter(UnixSocketChannel(str(path), float(cfg.timeout)), cfg.backend,
                                 server_prefix=cfg.server_prefix, listen=s.listen,
                                 where=f"HAProxy at {path}")
        from shipyard.routers.builtin import BuiltinRouter

        return BuiltinRouter(agent.router, s.service, s.env, s.listen, s.router_options or None)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def actor() -> str:
    """Who asked: SHIPYARD_ACTOR (set by CI or the API) or the OS user."""
    return os.environ.get("SHIPYARD_ACTOR") or _user()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"
