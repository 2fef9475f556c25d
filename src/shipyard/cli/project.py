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
from collections.abc import Iterator
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
    from shipyard.monitoring.base import MetricProvider
    from shipyard.plugins import BuildContext
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
        from shipyard.plugins import build_target
        from shipyard.releases.store import ReleaseStore

        s = self.settings(service, env)
        return Environment(settings=s, store=self.store, target=build_target(s.target, self.build_context(s, agent)),
                           router=self.router(s, agent),
                           releases=ReleaseStore(self.state_dir / "releases", ssh_pool=lambda: self.fleet(agent)[0]),
                           actor=actor(),
                           listener=listener, secrets=self.secrets.environ_for, redactor=self.redactor,
                           notifications=self.config.notifications, metrics=self.metrics(s))

    def metrics(self, s: ServiceSettings) -> MetricProvider | None:
        """The configured metric source of a service (deploy.metrics), None for the router's own counters."""
        from shipyard.monitoring.providers import from_source

        return from_source(s.metrics, s.service, s.env) if s.metrics is not None else None

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
        """The `type: ssh` target of one (service, env), as the registry builds it (status and logs ask it)."""
        from shipyard.plugins import build_target
        from shipyard.targets.ssh import SshTarget

        target = build_target(s.target, self.build_context(s, agent))
        assert isinstance(target, SshTarget)
        return target

    def build_context(self, s: ServiceSettings, agent: AgentClient) -> BuildContext:
        """What the registry's factories get to build the target and router of one (service, env)."""
        from shipyard.plugins import BuildContext

        return BuildContext(root=self.root, state_dir=self.state_dir, service=s.service, env=s.env, settings=s,
                            agent=agent, ssh_pool=lambda: self.fleet(agent)[0],
                            host_agents=lambda: self.fleet(agent)[1], hosts=self.config.hosts)

    def router(self, s: ServiceSettings, agent: AgentClient) -> Router:
        """The router `deploy.router` names for one (service, env), built by its kind in the registry
        (shipyard.plugins): the agent's built-in one, HAProxy, or a plugin's."""
        from shipyard.plugins import build_router

        return build_router(s.router, self.build_context(s, agent))

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
