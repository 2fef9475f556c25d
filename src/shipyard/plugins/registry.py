"""Discovery of target and router kinds through entry points (see shipyard.plugins for the whole story).

Kept apart from the build context: config validation needs the registry (config.kinds), while the context
names the engine's settings and the agent client, which themselves read the config.
"""

from __future__ import annotations

import importlib.metadata as md
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel

from shipyard.errors import PluginError, UsageError

Group = Literal["targets", "routers"]
GROUPS: dict[Group, str] = {"targets": "shipyard.targets", "routers": "shipyard.routers"}
"""Registry group -> the entry point group a distribution declares its kinds in."""

BUILTIN: dict[Group, dict[str, str]] = {
    "targets": {"local": "shipyard.targets.kinds:LOCAL", "ssh": "shipyard.targets.kinds:SSH",
                "ecs": "shipyard.targets.kinds:ECS",
                "static": "shipyard.targets.kinds:STATIC", "command": "shipyard.targets.kinds:COMMAND"},
    "routers": {"builtin": "shipyard.routers.kinds:BUILTIN", "haproxy": "shipyard.routers.kinds:HAPROXY",
                "nginx": "shipyard.routers.kinds:NGINX", "alb": "shipyard.routers.kinds:ALB"},
}
"""shipyard's own entry points, as pyproject.toml declares them (a unit test keeps the two equal). Used
only when the installed shipyard's metadata predates them (an editable install not reinstalled since),
so such an install still finds its own kinds; they load through the same path as any plugin."""

SELF = "shipyard"

T = TypeVar("T")


@dataclass(frozen=True)
class Kind(Generic[T]):
    """One target or router kind. `config` must have a field `type: Literal["<name>"]`."""

    name: str
    config: type[BaseModel]
    build: Callable[[Any, Any], T]  # (config model, shipyard.plugins.BuildContext) -> Target | Router
    summary: str = ""               # one line for docs and `config schema` readers
    iam: Callable[[Any, Any], list[Any]] | None = None   # (config, aws.policy.Scope) -> the IAM statements
                                                          # it needs (`shipyard aws policy`); None: no AWS

    @property
    def activates_releases(self) -> bool:
        """A release target (targets.base.ReleaseTarget: no instances): its config model says so with a
        class attribute `ACTIVATES_RELEASES = True`."""
        return bool(getattr(self.config, "ACTIVATES_RELEASES", False))


@dataclass(frozen=True)
class Registered:
    kind: Kind[Any]
    distribution: str               # "name version" of the distribution that declared it
    entry_point: str                # "module:attr"


def _dist_name(ep: md.EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


def _type_literal(model: type[BaseModel]) -> tuple[Any, ...]:
    field = model.model_fields.get("type")
    return get_args(field.annotation) if field is not None else ()


def _load(group: Group, ep: md.EntryPoint, dist: str) -> Registered:
    where = f"{GROUPS[group]} entry point {ep.name!r} of {dist} ({ep.value})"
    try:
        kind = ep.load()
    except Exception as exc:        # whatever a broken plugin raises on import: one line, not a traceback
        raise PluginError(f"cannot load {where}: {type(exc).__name__}: {exc}") from None
    if not isinstance(kind, Kind):
        raise PluginError(f"{where} is a {type(kind).__name__}, not a shipyard.plugins.Kind")
    if kind.name != ep.name:
        raise PluginError(f"{where} declares kind {kind.name!r}: the entry point must be named like the kind")
    if not (isinstance(kind.config, type) and issubclass(kind.config, BaseModel)) or \
            _type_literal(kind.config) != (kind.name,):
        raise PluginError(f"{where}: its config model needs a field `type: Literal[{kind.name!r}]`")
    return Registered(kind, dist, ep.value)


@cache
def registered(group: Group) -> dict[str, Registered]:
    """Every kind of `group` ("targets" or "routers"), by config `type`, with who declared it."""
    eps = list(md.entry_points(group=GROUPS[group]))
    if not any(ep.dist is not None and ep.dist.name == SELF for ep in eps):
        eps = [md.EntryPoint(name, value, GROUPS[group]) for name, value in BUILTIN[group].items()] + eps
    found: dict[str, Registered] = {}
    for ep in sorted(eps, key=lambda e: e.dist is not None and e.dist.name != SELF):    # built-ins first
        dist = _dist_name(ep) if ep.dist is not None else f"{SELF} (built in)"
        if ep.name in found:
            raise PluginError(f"{GROUPS[group]} kind {ep.name!r} is declared twice: by "
                              f"{found[ep.name].distribution} and by {dist} (uninstall one)")
        found[ep.name] = _load(group, ep, dist)
    return found


def kinds(group: Group) -> dict[str, Kind[Any]]:
    """The kinds of `group` by config `type`."""
    return {name: r.kind for name, r in registered(group).items()}


def kind(group: Group, name: str) -> Kind[Any]:
    found = registered(group).get(name)
    if found is None:
        raise UsageError(f"unknown {group[:-1]} type {name!r} (known: {', '.join(registered(group))})")
    return found.kind


def reset() -> None:
    """Forget what was discovered (a distribution was added to or removed from sys.path)."""
    registered.cache_clear()
