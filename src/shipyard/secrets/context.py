"""The secrets side of one CLI invocation (or API request): providers per environment, command-line
overrides, the cache of resolved values and the Redactor every resolved secret is registered with.

Passed explicitly (Project -> engine Environment -> Journal) instead of living in a module global, so
two projects in one process (the API server, tests) never mask or leak each other's values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.errors import MissingSecretsError
from shipyard.secrets import scrub
from shipyard.secrets.base import SecretProvider
from shipyard.secrets.providers import ProviderContext, make_provider
from shipyard.secrets.redact import Redactor
from shipyard.secrets.resolver import SECRET_REF, Resolved, resolve, secret_refs

if TYPE_CHECKING:
    from shipyard.store import Store

ALL_SERVICES = "*"      # the events table needs a service; env-wide secret events use this one


class SecretsContext:
    def __init__(self, config: Any, root: Path, *, redactor: Redactor | None = None,
                 overrides: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.config, self.root = config, root
        self.redactor = redactor if redactor is not None else Redactor()
        self.overrides = dict(overrides or {})
        self.environ = os.environ if environ is None else environ
        self._providers: dict[tuple[str, str], SecretProvider] = {}
        self._resolved: dict[tuple[str, str], Resolved] = {}
        self._filled: dict[str, str] = {}
        if "env" in (self.settings.provider, *self.settings.also):      # before anything is spawned
            for env in config.environments:
                scrub.deny_prefix(ProviderContext(self.settings, config.project, root, env, self.environ)
                                  .fill(self.settings.env_prefix or ""))

    @property
    def settings(self) -> Any:
        return self.config.secrets

    def provider(self, env: str, name: str | None = None) -> SecretProvider:
        """The provider `name` (default: the configured one, where writes go) for `env`."""
        self.config.environment(env)
        name = name or self.settings.provider
        key = (name, env)
        if key not in self._providers:
            ctx = ProviderContext(self.settings, self.config.project, self.root, env, self.environ)
            self._providers[key] = make_provider(name, ctx)
        return self._providers[key]

    def chain(self, env: str) -> list[SecretProvider]:
        """Providers read for `env`, in precedence order."""
        names = list(dict.fromkeys([self.settings.provider, *self.settings.also]))
        return [self.provider(env, n) for n in names]

    def resolve(self, service: str, env: str, *, strict: bool = True) -> Resolved:
        """Resolve (once per invocation) and register the secret values with the redactor."""
        key = (service, env)
        if key not in self._resolved:
            result = resolve(self.config, service, env, self.chain(env), self.overrides, strict=False)
            self.redactor.add(*result.secret_values)
            self._resolved[key] = result
        result = self._resolved[key]
        if strict and result.missing:
            raise result.error()
        return result

    def environ_for(self, service: str, env: str) -> dict[str, str]:
        """What the engine asks for before a deploy: every value, or MissingSecretsError listing all gaps."""
        return self.resolve(service, env).environ()

    def fill(self, text: str, what: str) -> str:
        """`text` with each `${secret:NAME}` replaced by the first environment's providers (in config order)
        that have NAME: for project-wide settings (notification channels, the SSH key) that belong to no
        service. MissingSecretsError names every NAME nothing has; the values are registered for masking."""
        wanted = [n for n in secret_refs(text, what) if n not in self._filled]
        for env in self.config.environments:
            if not wanted:
                break
            for provider in self.chain(env):
                got = provider.get(wanted)
                self._filled.update({n: v for n, v in got.items() if n in wanted and v})
                wanted = [n for n in wanted if n not in self._filled]
        if wanted:
            raise MissingSecretsError(f"{what} secrets not set: {', '.join(wanted)} "
                                      "(set them with `shipyard secrets set`)", wanted)
        self.track(*self._filled.values())
        filled = SECRET_REF.sub(lambda m: self._filled[m.group(1)], text)
        if filled != text:
            self.track(filled)
        return filled

    def track(self, *values: str) -> None:
        """Register values read outside `resolve` (`secrets get`, `generate`) so nothing prints them by accident."""
        self.redactor.add(*values)


def audit(store: Store, kind: str, *, env: str, actor: str, names: Iterable[str], service: str = ALL_SERVICES,
          message: str = "", **data: Any) -> None:
    """One audit event naming who touched which secrets: names only, never values."""
    # Imported here: the caller's store is open already, and resolving secrets needs no store at all.
    from shipyard.store.events import add_event

    listed = sorted(set(names))
    with store.session() as s:
        add_event(s, kind, service=service, env=env, message=message or f"{kind} by {actor}: {', '.join(listed)}",
                  data={"actor": actor, "names": listed, **data})
