"""The provider registry: a name from `secrets.provider` / `secrets.also` to a factory for one environment.

Built-ins register here the same way a plugin would (`register`), so adding a backend touches no caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shipyard.errors import UsageError
from shipyard.secrets.base import SecretProvider


@dataclass(frozen=True)
class ProviderContext:
    """What a factory may use: the `secrets:` config section, the project and the environment name."""

    settings: Any               # shipyard.config.Secrets
    project: str
    root: Path
    env: str
    environ: Mapping[str, str]

    def fill(self, template: str) -> str:
        return template.replace("{project}", self.project).replace("{env}", self.env)


Factory = Callable[[ProviderContext], SecretProvider]
_REGISTRY: dict[str, Factory] = {}


def register(name: str, factory: Factory) -> None:
    """Make `name` usable in `secrets.provider` (a plugin calls this from its entry point)."""
    _REGISTRY[name] = factory


def names() -> list[str]:
    return sorted(_REGISTRY)


def make_provider(name: str, ctx: ProviderContext) -> SecretProvider:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown secrets provider {name!r} (known: {', '.join(names())})") from None
    return factory(ctx)


def _local(ctx: ProviderContext) -> SecretProvider:
    from shipyard.secrets.keys import KeySource
    from shipyard.secrets.providers.local import LocalProvider

    directory = ctx.root / (ctx.settings.path or ".shipyard/secrets")
    keys = KeySource.for_project(ctx.project, ctx.root, ctx.settings.key_file, dict(ctx.environ))
    return LocalProvider(directory, ctx.project, ctx.env, keys)


def _env(ctx: ProviderContext) -> SecretProvider:
    from shipyard.secrets.providers.env import EnvProvider

    return EnvProvider(ctx.fill(ctx.settings.env_prefix or ""), ctx.environ)


def _secretsmanager(ctx: ProviderContext) -> SecretProvider:
    from shipyard.secrets.providers.aws import SecretsManagerProvider

    prefix = ctx.fill(ctx.settings.prefix if ctx.settings.prefix is not None else "{project}/{env}/")
    return SecretsManagerProvider(prefix, region=ctx.settings.region, endpoint_url=ctx.settings.endpoint_url)


def _ssm(ctx: ProviderContext) -> SecretProvider:
    from shipyard.secrets.providers.aws import SsmProvider

    path = ctx.fill(ctx.settings.prefix if ctx.settings.prefix is not None else "/{project}/{env}/")
    return SsmProvider(path, region=ctx.settings.region, endpoint_url=ctx.settings.endpoint_url)


register("local", _local)
register("env", _env)
register("aws-secretsmanager", _secretsmanager)
register("aws-ssm", _ssm)

__all__ = ["ProviderContext", "SecretProvider", "make_provider", "names", "register"]
